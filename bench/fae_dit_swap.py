"""Where the LightningDiT FD gap of the FAE chain comes from (issue 13 item 4): Kiln's and PyTorch's LightningDiT
trained on the *same* FAE latents (Kiln's), each sampled by *both* samplers, decoded by the same decoders and
scored by the same code, over several seeds.

    python3 bench/fae_dit_swap.py train --encoder ENC --ia IA --seed S --steps N --out DIR [--deadline T]
    python3 bench/fae_dit_swap.py score --encoder ENC --fae IA,FT --classifier CLF [--torch NAME=DIR ...]
                                        [--kiln NAME=RUN ...] [--files NAME=FILE ...] [--seeds 0,1] --out JSON

ENC: a Kiln ssl-encoder checkpoint (a step directory or a run directory: its newest checkpoint; the student
weights, as the FAE jobs and `kiln eval fd` use). IA, FT: Kiln's stage-Ia and fine-tuned pixel-decoder runs.
CLF: Kiln's fashion-classifier run.

train: PyTorch's LightningDiT of bench/fae_pipeline_torch.py (golden/lightningdit_golden.py's model, the flow-
matching loss with logit-normal t and 10% label dropout, fused AdamW β (0.9, 0.95), clip 1, EMA, lr 2e-4, batch
128) on Kiln's FAE latents: the frozen Kiln encoder and Kiln's stage-Ia adapter (posterior mean, computed once
for the train split under the same autocast), normalized per channel with the stats of 4 batches (as both
pipelines do). Seed S: the initial weights, the batch order and the noise. Writes DIR/dit.safetensors (the
weights under the reference's keys, which `kiln sample --model` reads), DIR/latent_stats.json, DIR/losses.json.

score: every DiT given (--torch: a `train` output; --kiln: a Kiln lightningdit-fae run, its newest checkpoint's
raw weights and latent stats) sampled by PyTorch's sampler (bench/fae_pipeline_torch.py's dit_sample: Euler,
50 grid points, shift 0.4, CFG 2.5 on t in [0.3, 1] and none, labels cycling 0-9; initial noise from
torch.Generator seeded with each of --seeds), decoded by Kiln's feature + pixel decoders (the same for every
set), and every `kiln sample --save-samples` file (--files) too; each set scored the same way: FD of mean-pooled
SSL-encoder features against test[0:N] (floor: test[0:N] vs test[N:2N]) and the accuracy of Kiln's classifier
(as `kiln eval accuracy`: the share classified as the class sampled). Writes JSON rows and prints a table.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fae_pipeline_torch as P  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402


def checkpoint_dir(path: str) -> Path:
    """A step directory, or a run directory's newest checkpoint."""
    p = Path(path)
    if (p / "model.safetensors").exists():
        return p
    steps = sorted((p / "checkpoints").glob("step-*"))
    if not steps:
        raise SystemExit(f"{path}: no model.safetensors and no checkpoints/step-*")
    return steps[-1]


def metadata(file: Path) -> dict:
    """The __metadata__ of a safetensors file (its JSON header)."""
    with open(file, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def kiln_fae(encoder: str, parts: list[str], dev):
    """The golden FAE with Kiln's frozen encoder (student) and the adapter / decoders of Kiln's runs."""
    fae = P.make_fae(load_file(str(checkpoint_dir(encoder) / "model.safetensors")))
    st = fae.state_dict()
    for part in parts:
        w = load_file(str(checkpoint_dir(part) / "model.safetensors"))
        unknown = [k for k in w if k not in st]
        if unknown:
            raise SystemExit(f"{part}: keys the FAE does not have: {unknown[:3]}")
        st.update(w)
    fae.load_state_dict(st)
    return fae.to(dev).eval()


def kiln_classifier(run: str, dev):
    w = load_file(str(checkpoint_dir(run) / "model.safetensors"))
    clf = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.GELU(), nn.Linear(1024, 512), nn.GELU(), nn.Linear(512, 10))
    clf.load_state_dict({f"{1 + 2 * i}.{k}": w[f"layers.{i}.{k}"] for i in range(3) for k in ("weight", "bias")})
    return clf.to(dev).eval()


def dit_from(weights: dict, dev):
    m = P.make_dit()
    missing, unexpected = m.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("feat_rope.") for k in missing):
        raise SystemExit(f"LightningDiT weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return m.to(dev).eval()


def train(a):
    dev = P.DEVICE
    fae = kiln_fae(a.encoder, [a.ia], dev)
    xtr, ytr = P.fashion("train")
    xtr, ytr = xtr[:a.train_limit], ytr[:a.train_limit]
    t0 = time.perf_counter()
    with torch.no_grad(), P.autocast():
        z = torch.cat([fae.adapter(fae.encoder(xtr[i:i + 1000].to(dev)))[0].float().transpose(1, 2).reshape(-1, 4, 7, 7) for i in range(0, xtr.shape[0], 1000)])
    it = iter(P.Batches(z, ytr, 128, 4, dev))
    z0 = torch.cat([next(it)[0] for _ in range(4)])
    stats = (z0.mean(dim=(0, 2, 3)), z0.std(dim=(0, 2, 3), unbiased=False).clamp(min=1e-6))
    norm = lambda v: (v - stats[0].view(1, -1, 1, 1)) / stats[1].view(1, -1, 1, 1)  # noqa: E731
    print(f"latents of {z.shape[0]} train images in {time.perf_counter() - t0:.1f} s; stats mean {stats[0].tolist()} std {stats[1].tolist()}", flush=True)
    seed = 5 + 1000 * a.seed  # seed 0 = fae_pipeline_torch's generator seed
    model, loss_fn, opt_args, schedule = P.train_dit(norm, lambda v: v, dev, seed=seed)
    ls, secs, done = P.train_loop(f"lightningdit (torch, seed {a.seed})", list(model.parameters()), loss_fn, P.Batches(z, ytr, 128, seed, dev), a.steps, schedule(a.steps), log=print, **opt_args)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items() if not k.startswith("feat_rope.")}, str(out / "dit.safetensors"))
    (out / "latent_stats.json").write_text(json.dumps({"mean": stats[0].tolist(), "std": stats[1].tolist()}) + "\n")
    (out / "losses.json").write_text(json.dumps({"steps": done, "steps_planned": a.steps, "train_s": secs, "loss_last100": float(np.mean(ls[-100:])) if ls else None, "losses": ls}) + "\n")


def score(a):
    dev = P.DEVICE
    N = a.count
    parts = a.fae.split(",")
    fae = kiln_fae(a.encoder, parts, dev)
    enc = fae.encoder
    clf = kiln_classifier(a.classifier, dev)
    xte, _ = P.fashion("test")
    real = P.pooled(enc, xte[:2 * N].to(dev))
    floor = P.frechet(real[:N], real[N:2 * N])
    labels = (torch.arange(N) % 10).to(dev)
    rows = []

    def rate(name, trained, sampler, variant, seed, imgs, lab):
        imgs = imgs.to(dev).float()
        with torch.no_grad():
            acc = float((clf(imgs).argmax(-1) == lab.to(dev)).float().mean())
        fd = P.frechet(P.pooled(enc, imgs[:N]), real[:N])
        rows.append({"model": name, "trained_by": trained, "sampler": sampler, "variant": variant, "seed": seed, "fd": fd, "accuracy": acc})
        print(f"{name:>14} trained by {trained:>7}, {sampler:>7} sampler, {variant:>4}, seed {seed}: FD {fd:.3f}, accuracy {100 * acc:.1f}%", flush=True)

    dits = []
    for spec in a.torch:
        name, d = spec.split("=", 1)
        st = json.loads((Path(d) / "latent_stats.json").read_text())
        dits.append((name, "PyTorch", load_file(str(Path(d) / "dit.safetensors")), st))
    for spec in a.kiln:
        name, run = spec.split("=", 1)
        ck = checkpoint_dir(run)
        st = json.loads(metadata(ck / "train_state.safetensors")["latent_stats"])
        dits.append((name, "Kiln", load_file(str(ck / "model.safetensors")), st))
    for name, trained, w, st in dits:
        model = dit_from(w, dev)
        stats = (torch.tensor(st["mean"], device=dev), torch.tensor(st["std"], device=dev))
        for seed in [int(s) for s in a.seeds.split(",")]:
            for variant, cfg in (("cfg", 2.5), ("none", None)):
                with P.autocast():
                    imgs = P.decode(fae, P.dit_sample(model, labels, steps=a.sample_steps, cfg=cfg, gen=torch.Generator().manual_seed(seed)), stats)
                rate(name, trained, "PyTorch", variant, seed, imgs, labels)
    for spec in a.files:
        name, f = spec.split("=", 1)  # NAME=FILE; NAME may say trained_by:model:variant:seed
        t = load_file(f)
        bits = name.split(":")
        trained, model, variant, seed = (bits + ["?"] * 4)[:4] if len(bits) >= 4 else ("?", name, "?", "?")
        rate(model, trained, "Kiln", variant, seed, t["images"], t["labels"].long())
    out = {"floor": floor, "count": N, "rows": rows}
    # mean and spread over seeds for each (model, sampler, variant); then over models trained by each side
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["trained_by"], r["model"], r["sampler"], r["variant"]), []).append(r)
    print(f"\nFD floor {floor:.3f} (N = {N})\n\n| trained by | model | sampler | guidance | samples (seeds) | FD mean | FD sd | accuracy mean |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = []
    for (tb, m, s, v), rs in sorted(groups.items()):
        fds = [r["fd"] for r in rs]
        accs = [r["accuracy"] for r in rs]
        summary.append({"trained_by": tb, "model": m, "sampler": s, "variant": v, "n": len(rs), "fd_mean": float(np.mean(fds)), "fd_sd": float(np.std(fds, ddof=1)) if len(fds) > 1 else None, "acc_mean": float(np.mean(accs))})
        sd = f"{np.std(fds, ddof=1):.3f}" if len(fds) > 1 else "-"
        print(f"| {tb} | {m} | {s} | {v} | {len(rs)} | {np.mean(fds):.3f} | {sd} | {100 * np.mean(accs):.1f}% |")
    out["summary"] = summary
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("train", "score"):
        s = sub.add_parser(name)
        s.add_argument("--encoder", required=True)
        s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        s.add_argument("--precision", choices=["f32", "bf16"], default="bf16" if torch.cuda.is_available() else "f32")
        s.add_argument("--out", required=True)
    t = sub.choices["train"]
    t.add_argument("--ia", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=4000)
    t.add_argument("--train-limit", type=int, default=60000, help="train images (smoke runs)")
    t.add_argument("--deadline", type=float, default=0.0, help="Unix time at which training stops (the steps taken are then said)")
    s = sub.choices["score"]
    s.add_argument("--fae", required=True)
    s.add_argument("--classifier", required=True)
    s.add_argument("--torch", action="append", default=[])
    s.add_argument("--kiln", action="append", default=[])
    s.add_argument("--files", action="append", default=[])
    s.add_argument("--seeds", default="0")
    s.add_argument("--count", type=int, default=1000)
    s.add_argument("--sample-steps", type=int, default=50, help="Euler grid points of PyTorch's sampler")
    a = ap.parse_args()
    P.DEVICE, P.PRECISION, P.DEADLINE = a.device, a.precision, getattr(a, "deadline", 0.0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    train(a) if a.cmd == "train" else score(a)


if __name__ == "__main__":
    main()
