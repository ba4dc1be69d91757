"""PyTorch's half of bench/ditStepParity.ts: the FAE job's LightningDiT training step on the same weights, batches,
noise, times and dropped labels as Kiln's run in DIR, compared step by step.

    python3 bench/dit_step_parity_torch.py DIR [--device cuda] [--precision bf16|f32]

Reads DIR/parity-inputs.safetensors, DIR/kiln.json, DIR/kiln-final.safetensors; runs the steps with the model and
optimizer of bench/fae_pipeline_torch.py (golden/lightningdit_golden.py's LightningDiT, fused AdamW on cuda,
clip_grad_norm_, the EMA lerp) and prints, per step, both losses and grad norms, then how far the weights moved
apart: |Kiln − PyTorch| of (final − init) over |PyTorch's final − init| (relative L2 over all trained tensors),
which is what "the same training" means at bf16 (bitwise agreement is not expected: different GEMM kernels).
Writes DIR/parity.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fae_pipeline_torch as P  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

LG = P.LG


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["f32", "bf16"], default=None, help="default: Kiln's run's precision")
    a = ap.parse_args()
    d = Path(a.dir)
    kiln = json.loads((d / "kiln.json").read_text())
    P.DEVICE, P.PRECISION = a.device, a.precision or kiln["precision"]
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    inp = load_file(str(d / "parity-inputs.safetensors"))
    S = kiln["steps"]
    dev = a.device
    model = P.make_dit().to(dev)
    init = {k[5:]: v for k, v in inp.items() if k.startswith("init.")}
    missing, unexpected = model.load_state_dict(init, strict=False)
    if unexpected or any(not k.startswith("feat_rope.") for k in missing):
        raise SystemExit(f"state dicts differ: missing {missing}, unexpected {unexpected}")
    init = {k: v.to(dev) for k, v in init.items()}
    ema = P.Ema(model, 0.9999)
    params = list(model.parameters())
    fused = {"fused": True} if dev == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, **fused)
    rows = []
    for s in range(S):
        x1, x0, t, y = (inp[f"{n}.{s}"].to(dev) for n in ("x1", "x0", "t", "y"))
        with P.autocast():
            loss, mse, cos = LG.fm_loss(model, x1, x0, t, y.long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        opt.step()
        ema()
        rows.append({"step": s + 1, "loss_torch": float(loss), "loss_kiln": kiln["loss"][s], "mse_torch": float(mse), "mse_kiln": kiln["mse"][s],
                     "grad_norm_torch": gn, "grad_norm_kiln": kiln["grad_norm"][s]})
    fin = load_file(str(d / "kiln-final.safetensors"))
    num = den = 0.0
    worst = (0.0, "")
    named = dict(model.named_parameters())
    for k, p in named.items():
        if not p.requires_grad:
            continue
        dk, dt = fin[k].to(dev).float() - init[k].float(), p.detach().float() - init[k].float()
        num += float((dk - dt).pow(2).sum())
        den += float(dt.pow(2).sum())
        r = float((dk - dt).norm() / dt.norm().clamp(min=1e-12))
        worst = max(worst, (r, k))
    ema_num = ema_den = 0.0
    for k, sh in zip(named, ema.shadow):
        if named[k].requires_grad and f"ema.{k}" in fin:
            ema_num += float((fin[f"ema.{k}"].to(dev).float() - sh.float()).pow(2).sum())
            ema_den += float((sh.float() - init[k].float()).pow(2).sum())
    rel = (num / max(den, 1e-30)) ** 0.5
    print(f"{'step':>4} {'loss Kiln':>10} {'loss torch':>10} {'rel':>8} {'|g| Kiln':>9} {'|g| torch':>9}")
    for r in rows:
        print(f"{r['step']:>4} {r['loss_kiln']:>10.5f} {r['loss_torch']:>10.5f} {abs(r['loss_kiln'] - r['loss_torch']) / abs(r['loss_torch']):>8.2e} {r['grad_norm_kiln']:>9.4f} {r['grad_norm_torch']:>9.4f}")
    maxrel = max(abs(r["loss_kiln"] - r["loss_torch"]) / abs(r["loss_torch"]) for r in rows)
    print(f"weights after {S} steps: |Δ_kiln − Δ_torch| / |Δ_torch| = {rel:.3e} (worst tensor {worst[1]}: {worst[0]:.3e}); "
          f"EMA moved {ema_den ** 0.5:.3e}, differs by {ema_num ** 0.5:.3e}; max per-step loss rel diff {maxrel:.3e} "
          f"({kiln['backend']} {kiln['precision']} vs torch {dev} {P.PRECISION}, batch {kiln['batch']})")
    (d / "parity.json").write_text(json.dumps({"rows": rows, "weights_rel": rel, "worst": worst, "loss_maxrel": maxrel,
                                               "kiln": f"{kiln['backend']} {kiln['precision']}", "torch": f"{dev} {P.PRECISION}"}, indent=1) + "\n")


if __name__ == "__main__":
    main()
