"""Goldens for Kiln's optimizer transforms: a tiny MLP trained for 10 steps with torch.optim.

Writes golden/data/optim/<config>.safetensors with the initial parameters (param.<key>), the
batches (x [S,B,6] f32, y [S,B] i32), the per-step learning rates (lr [S]), the per-step losses
(loss [S]) and gradient norms (grad_norm [S], before clipping), and the parameters after the last
step (final.<key>) and their EMA (ema.<key>) where configured.

Run: .venv/bin/python golden/optim_golden.py
"""
import os
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(__file__), "data", "optim")
STEPS, B, IN, HID, C = 10, 4, 6, 8, 3


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(IN, HID), torch.nn.Linear(HID, C)])

    def forward(self, x):
        return self.layers[1](torch.nn.functional.gelu(self.layers[0](x)))


def run(name, make_opt, clip=None, ema_decay=None):
    g = torch.Generator().manual_seed(1)
    model = Mlp()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema = {k: v.detach().clone() for k, v in model.named_parameters()}
    xs = torch.randn(STEPS, B, IN, generator=g)
    ys = torch.randint(0, C, (STEPS, B), generator=g)
    lrs = torch.tensor([0.05 * (0.8 ** s) for s in range(STEPS)])
    opt = make_opt(model.parameters())
    losses, norms = [], []
    for s in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = float(lrs[s])
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xs[s]), ys[s])
        loss.backward()
        total = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in model.parameters()))
        norms.append(total.item())
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
        if ema_decay is not None:
            with torch.no_grad():
                for k, p in model.named_parameters():
                    ema[k].mul_(ema_decay).add_(p.detach(), alpha=1 - ema_decay)
    out = {f"param.{k}": v for k, v in init.items()}
    out.update({f"final.{k}": v.detach().clone() for k, v in model.state_dict().items()})
    if ema_decay is not None:
        out.update({f"ema.{k}": v for k, v in ema.items()})
    out.update({"x": xs, "y": ys.to(torch.int32), "lr": lrs.float(), "loss": torch.tensor(losses), "grad_norm": torch.tensor(norms)})
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, f"{name}.safetensors"))


os.makedirs(OUT, exist_ok=True)
run("adamw", lambda ps: torch.optim.AdamW(ps, lr=0.05, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1))
run("adamw_clip_ema", lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.01), clip=0.5, ema_decay=0.9)
run("sgd_momentum", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01))
run("sgd_nesterov", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True))
run("sgd_plain", lambda ps: torch.optim.SGD(ps, lr=0.05))
print("wrote", sorted(os.listdir(OUT)))
