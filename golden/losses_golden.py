"""Goldens for Kiln's loss functions: values and input gradients from PyTorch.

Writes golden/data/losses.safetensors: for each case `<name>`, inputs `<name>.in.<arg>`, the loss
`<name>.out` and gradients `<name>.grad.<arg>` of the loss.
Run: .venv/bin/python golden/losses_golden.py
"""
import os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

g = torch.Generator().manual_seed(0)
out = {}


def case(name, fn, **args):
    leaves = {k: (v.clone().requires_grad_(True) if v.is_floating_point() else v) for k, v in args.items()}
    loss = fn(**leaves)
    loss.backward()
    for k, v in leaves.items():
        out[f"{name}.in.{k}"] = v.detach().to(torch.int32) if not v.is_floating_point() else v.detach()
        if v.is_floating_point():
            out[f"{name}.grad.{k}"] = v.grad
    out[f"{name}.out"] = loss.detach().reshape(1)


r = lambda *s: torch.randn(*s, generator=g)
case("mse", lambda a, b: F.mse_loss(a, b), a=r(3, 5), b=r(3, 5))
case("l1", lambda a, b: F.l1_loss(a, b), a=r(4, 2, 3), b=r(4, 2, 3))
case("ce", lambda logits, y: F.cross_entropy(logits, y), logits=r(6, 7) * 3, y=torch.randint(0, 7, (6,), generator=g))
case("ce_smooth", lambda logits, y: F.cross_entropy(logits, y, label_smoothing=0.1), logits=r(5, 4), y=torch.randint(0, 4, (5,), generator=g))
# class axis last for sequences: Kiln's crossEntropy takes [..., C]; PyTorch wants [N, C, ...]
case("ce_seq", lambda logits, y: F.cross_entropy(logits.permute(0, 2, 1), y), logits=r(2, 3, 5), y=torch.randint(0, 5, (2, 3), generator=g))
case("kl", lambda mean, logvar: (0.5 * (mean ** 2 + logvar.exp() - 1 - logvar)).sum() / mean.shape[0], mean=r(3, 4, 2), logvar=r(3, 4, 2) * 0.5)
case("cos", lambda a, b: (1 - F.cosine_similarity(a, b, dim=-1)).mean(), a=r(4, 6), b=r(4, 6))
save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(os.path.dirname(__file__), "data", "losses.safetensors"))
print(len(out), "tensors")
