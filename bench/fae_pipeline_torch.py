"""The Fashion-MNIST FAE pipeline in PyTorch: the side-by-side of `kiln pipeline` (issue 13 item 4).

Run from the repository root (CPU or CUDA torch):
    python3 bench/fae_pipeline_torch.py --encoder RUN_OR_CKPT --plan plan.json --out DIR [--device cuda]

The same stages as Kiln's jobs (jobs/*.json), with the same models (the PyTorch references in
golden/fae_golden.py, golden/lightningdit_golden.py and golden/tarflow_golden.py, which the Kiln models
match to 1e-5 in the golden tests), losses, optimizers, learning-rate schedules, batch sizes and seed 0:
  classifier   MLP 784-1024-512-10 (GELU), AdamW wd 0.05, warmup-cosine 1e-3 (200), batch 128
  stage Ia     adapter + feature decoder on the frozen encoder's tokens, MSE + 1e-4·KL, AdamW, warmup-cosine 2e-4 (200)
  stage Ib     pixel decoder on features + 0.4·ε, L1 + 0.5·MSE(enc(x̂), f) (no GAN term: the short runs
               stop before the job's ganStart), AdamW β (0.5, 0.9), warmup-cosine 2e-4 (200)
  fine-tune    pixel decoder on the feature decoder's reconstruction (z = mean, no noise), AdamW, constant 5e-5
  LightningDiT depth 6, width 192, 3 heads, patch 1 on normalized 4x7x7 latents; flow matching (t = sigmoid(N(0,1)),
               MSE + cosine loss, 10% label dropout), AdamW β (0.9, 0.95), 2e-4, clip 1, EMA 0.9999
  TarFlow      4 blocks × 2 layers, width 128, head 32, patch 1, noise σ 0.05, label drop 0.1, AdamW β (0.9, 0.95)
               wd 1e-4, warmup-cosine 1e-4 (500), clip 1
then samples (LightningDiT: Euler ODE, 50 grid points, shift 0.4, with CFG 2.5 on t in [0.3, 1] and without;
TarFlow: reverse sampling, guidance w and none), decoded through feature + pixel decoder, and the metrics
of `kiln pipeline`: Fréchet distance of mean-pooled SSL-encoder features (N samples vs the first N test
images; floor = test[0:N] vs test[N:2N]), classifier accuracy on the class-conditional samples, PSNR/SSIM
of reconstructions (11×11 Gaussian SSIM, 'valid'), linear probe of reconstructed vs raw features.

`--plan` is a JSON file {stage: {"steps": executed, "total": scheduled}} (the Kiln run's step counts, so both
sides take the same number of optimizer steps; `total` sets the cosine schedule's length). What differs
from Kiln (said in docs/RESULTS.md): the random streams (torch's generator vs Kiln's Philox: same seed,
different numbers, hence different initial weights, batch order, noise) and the data order.
Writes DIR/torch_metrics.json and prints a table; wall-clock per stage includes its evaluation.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "golden"))
import fae_golden as FG  # noqa: E402
import lightningdit_golden as LG  # noqa: E402
import tarflow_golden as TG  # noqa: E402


def _timestep_embed(self, t, max_period=10000):
    """LightningDiT's timestep embedding with its frequency table on t's device (the golden builds it on the CPU)."""
    half = self.freq // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


LG.TimestepEmbedder.forward = _timestep_embed

# models/fae/config.ts fashionMnistFaeConfig()
FAE_CFG = {
    "encoder": {"dim": 64, "grid": 7},
    "adapter": {"heads": 4, "headDim": 32, "latentChannels": 4, "activation": "gelu", "normEps": 1e-6, "logvarClamp": [-30, 20]},
    "featureDecoder": {"depth": 2, "heads": 4, "mlpHidden": int(2 / 3 * 256), "normEps": 1e-6, "ropeTheta": 10000},
    "pixelDecoder": {"dim": 96, "depth": 4, "heads": 4, "mlpHidden": 384, "patchSize": 4, "channels": 1, "normEps": 1e-6},
    "discriminator": {"channels": [32, 64], "patchSizes": [2, 2], "leakySlope": 0.2},
}
ENC_CFG = {"dim": 64, "depth": 4, "heads": 4, "mlpHidden": 256, "patchSize": 4, "imageSize": 28, "channels": 1}
LOSS = {"klWeight": 1e-4, "l1Weight": 1.0, "perceptualWeight": 0.5, "sigma": 0.4}


# ─────────────────────────────── data ───────────────────────────────


def fashion(split: str):
    d = Path(os.environ.get("KILN_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    pre = "train" if split == "train" else "t10k"
    with gzip.open(d / f"{pre}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(d / f"{pre}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy((x.astype(np.float32) / 255 - 0.5) / 0.5), torch.from_numpy(y.astype(np.int64))


class Batches:
    """Seeded per-epoch shuffles of the whole train split, drop-last batches (as FashionSource)."""

    def __init__(self, x, y, batch, seed, device):
        self.x, self.y, self.b, self.dev = x.to(device), y.to(device), batch, device
        self.g = torch.Generator().manual_seed(seed)
        self.per = x.shape[0] // batch

    def __iter__(self):
        while True:
            p = torch.randperm(self.x.shape[0], generator=self.g).to(self.dev)
            for i in range(self.per):
                idx = p[i * self.b:(i + 1) * self.b]
                yield self.x[idx], self.y[idx]


def warmup_cosine(lr, warmup, total, min_lr=0.0):
    def f(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))
    return f


def train_loop(name, params, loss_fn, batches, steps, schedule, betas=(0.9, 0.999), wd=0.0, clip=None, ema=None, log=None, every=0, snapshot=None):
    """AdamW steps; returns (per-step losses, seconds, steps taken). Stops early at DEADLINE (the safety net of a GPU
    window, as Kiln's --time-limit): the steps taken are then fewer than asked, and said. every > 0: snapshot(step)
    after every `every` steps (outside the timed loop's budget: its seconds are subtracted)."""
    # fused AdamW on cuda (one kernel for all parameters: what a user picks for small models)
    fused = {"fused": True} if DEVICE == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=schedule(0), betas=betas, eps=1e-8, weight_decay=wd, **fused)
    losses = []
    sync()
    t0 = time.perf_counter()
    it = iter(batches)
    for step in range(steps):
        if DEADLINE and time.time() > DEADLINE:
            break
        for g in opt.param_groups:
            g["lr"] = schedule(step)
        x, y = next(it)
        with autocast():
            loss = loss_fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        if ema is not None:
            ema()
        losses.append(loss.detach())
        if every and (step + 1) % every == 0:
            sync()
            t1 = time.perf_counter()
            snapshot(step + 1)
            t0 += time.perf_counter() - t1
    sync()
    secs = time.perf_counter() - t0
    ls = [float(v) for v in losses]
    done = len(ls)
    if log:
        cut = f" (stopped at the deadline: {done} of {steps})" if done < steps else ""
        log(f"{name}: {done} steps in {secs:.2f} s ({1000 * secs / max(1, done):.2f} ms/step), loss {ls[0] if ls else float('nan'):.4f} -> {ls[-1] if ls else float('nan'):.4f}{cut}")
    return ls, secs, done


DEVICE = "cpu"
PRECISION = "f32"
DEADLINE = 0.0  # time.time() after which train_loop stops (0: none)


def autocast():
    """Kiln's autocast on cuda (bf16 matmul/attention operands, f32 accumulation, weights and losses f32) is
    torch.autocast's bf16 policy; f32 runs with TF32 off."""
    return torch.autocast(device_type="cuda" if DEVICE == "cuda" else "cpu", dtype=torch.bfloat16, enabled=PRECISION == "bf16")


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


# ─────────────────────────────── models ───────────────────────────────


def xavier_init(m: nn.Module):
    for mod in m.modules():
        if isinstance(mod, nn.Linear):
            nn.init.xavier_uniform_(mod.weight)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)


def make_fae(encoder_state):
    fae = FG.FAE(FAE_CFG, ENC_CFG)  # torch's default Linear init = Kiln's nn.Linear default (U(±1/√fan_in) weight and bias)
    missing = [k for k in fae.encoder.state_dict() if f"encoder.{k}" not in encoder_state]
    if missing:
        raise SystemExit(f"encoder checkpoint lacks {missing[:3]}")
    fae.encoder.load_state_dict({k: encoder_state[f"encoder.{k}"] for k in fae.encoder.state_dict()})
    for p in fae.encoder.parameters():
        p.requires_grad_(False)
    return fae


def kl(mean, logvar):
    return (0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)).sum(dim=(1, 2)).mean()


def make_dit():
    m = LG.LightningDiT(input_size=7, patch_size=1, in_channels=4, hidden_size=192, depth=6, num_heads=3, num_classes=10,
                        class_dropout_prob=0.1, use_swiglu=True, use_rope=True, use_rmsnorm=True)
    # initialize_weights (LightningDiT): xavier Linear, zero bias; patch embed xavier on [D, C·p·p]; N(0, 0.02)
    # label table and timestep MLP; adaLN and final linear zero.
    xavier_init(m)
    w = m.x_embedder.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(m.x_embedder.proj.bias)
    nn.init.normal_(m.y_embedder.embedding_table.weight, std=0.02)
    nn.init.normal_(m.t_embedder.mlp[0].weight, std=0.02)
    nn.init.normal_(m.t_embedder.mlp[2].weight, std=0.02)
    for b in m.blocks:
        nn.init.zeros_(b.adaLN_modulation[-1].weight)
        nn.init.zeros_(b.adaLN_modulation[-1].bias)
    for l in (m.final_layer.adaLN_modulation[-1], m.final_layer.linear):
        nn.init.zeros_(l.weight)
        nn.init.zeros_(l.bias)
    return m


TF_CFG = {"in_channels": 4, "img_size": 7, "patch_size": 1, "channels": 128, "head_dim": 32, "expansion": 4,
          "layers_per_block": [2, 2, 2, 2], "num_classes": 10, "nvp": True, "use_softplus": False, "soft_clip": 0,
          "use_sos": False, "patch_layout": "unfold", "seq_order": "R2L"}


def make_tarflow():
    return TG.Model(TF_CFG)


def tarflow_forward(model, x, y):
    x = model.patchify(x)
    logdets = torch.zeros(x.size(0), device=x.device)
    for blk in model.blocks:
        x, ld = blk(x, y)
        logdets = logdets + ld
    return x, logdets


class Ema:
    def __init__(self, model, decay):
        self.model, self.decay = model, decay
        self.live = [p for p in model.parameters()]
        self.shadow = [p.detach().clone() for p in self.live]

    def __call__(self):
        with torch.no_grad():  # one foreach lerp over all parameters: shadow += (1 - decay)·(p − shadow)
            torch._foreach_lerp_(self.shadow, self.live, 1 - self.decay)


# ─────────────────────────────── metrics ───────────────────────────────


@torch.no_grad()
def pooled(enc, x, batch=1000):
    return torch.cat([enc(x[i:i + batch]).mean(1) for i in range(0, x.shape[0], batch)])


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(s1)
    r1 = (v * w.clamp(min=0).sqrt()) @ v.T
    ev = torch.linalg.eigvalsh(r1 @ s2 @ r1).clamp(min=0)
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * ev.sqrt().sum())


def gaussian_window(size=11, sigma=1.5):
    g = torch.tensor([math.exp(-((i - (size - 1) / 2) ** 2) / (2 * sigma * sigma)) for i in range(size)], dtype=torch.float64)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a, b, data_range=2.0):
    a, b = a.double(), b.double()
    w = gaussian_window().to(a.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = F.conv2d(a, w), F.conv2d(b, w)
    sxx, syy, sxy = F.conv2d(a * a, w) - mx ** 2, F.conv2d(b * b, w) - my ** 2, F.conv2d(a * b, w) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return m.mean(dim=(1, 2, 3))


def psnr(a, b, data_range=2.0):
    return 10 * torch.log10(data_range ** 2 / (a - b).pow(2).mean(dim=(1, 2, 3)))


def linear_probe(xtr, ytr, xte, yte, epochs=30, lr=1e-2, wd=1e-4, seed=0):
    mu, sd = xtr.mean(0), xtr.std(0, unbiased=False).clamp(min=1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    lin = nn.Linear(xtr.shape[1], 10).to(xtr.device)
    opt = torch.optim.AdamW(lin.parameters(), lr=lr, weight_decay=wd)
    B = max(1, min(512, xtr.shape[0] // 8))
    per = xtr.shape[0] // B
    total, k = epochs * per, 0
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        p = torch.randperm(xtr.shape[0], generator=g).to(xtr.device)
        for i in range(per):
            for gr in opt.param_groups:
                gr["lr"] = lr * (1 + math.cos(math.pi * k / total)) / 2
            idx = p[i * B:(i + 1) * B]
            loss = F.cross_entropy(lin(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            k += 1
    with torch.no_grad():
        return float((lin(xte).argmax(-1) == yte).float().mean())


# ─────────────────────────────── sampling ───────────────────────────────


@torch.no_grad()
def dit_sample(model, y, steps=50, shift=0.4, cfg=None, interval=(0.3, 1.0), gen=None):
    B = y.shape[0]
    x = torch.randn(B, 4, 7, 7, generator=gen).to(y.device)
    t = torch.linspace(0, 1, steps)
    if shift > 0:
        t = shift * t / (1 + (shift - 1) * t)
    null = torch.full_like(y, 10)
    for i in range(steps - 1):
        ti = float(t[i])
        tb = torch.full((B,), ti, device=y.device)
        if cfg is not None and interval[0] <= ti <= interval[1]:
            out = model(torch.cat([x, x]), torch.cat([tb, tb]), torch.cat([y, null]))
            v = out[B:] + cfg * (out[:B] - out[B:])
        else:
            v = model(x, tb, y)
        x = x + float(t[i + 1] - t[i]) * v
    return x


@torch.no_grad()
def tarflow_sample(model, y, guidance=0.0, gen=None):
    z = torch.randn(y.shape[0], 49, 4, generator=gen).to(y.device)
    x = z
    for blk in reversed(model.blocks):
        x = blk.reverse(x, y, guidance)
    return model.unpatchify(x)


@torch.no_grad()
def decode(fae, latents, stats):
    """Normalized latents [B, C, 7, 7] → images [B, 1, 28, 28] in [-1, 1]."""
    mean, std = stats
    z = latents * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    z = z.flatten(2).transpose(1, 2)
    out = []
    for i in range(0, z.shape[0], 500):
        out.append(fae.pixel_decoder(fae.feature_decoder(z[i:i + 500])))
    return torch.cat(out)  # not clamped: kiln sample saves the decoder output as it is


# ─────────────────────────────── the pipeline ───────────────────────────────


def train_dit(norm, latents, dev, seed=5):
    """LightningDiT on normalized FAE latents (jobs/lightningdit-fae.json): (model, loss, optimizer settings, schedule(total))."""
    torch.manual_seed(seed)
    dit = make_dit().to(dev)
    ema = Ema(dit, 0.9999)

    def fm(x, y):
        x1 = norm(latents(x))
        x0 = torch.randn_like(x1)
        t = torch.sigmoid(torch.randn(x.shape[0], device=dev))
        yd = torch.where(torch.rand(x.shape[0], device=dev) < 0.1, torch.full_like(y, 10), y)
        return LG.fm_loss(dit, x1, x0, t, yd)[0]

    return dit, fm, dict(betas=(0.9, 0.95), clip=1.0, ema=ema), lambda total: (lambda s: 2e-4)


def train_tarflow(norm, latents, dev):
    """TarFlow on normalized FAE latents (jobs/tarflow-fae.json)."""
    torch.manual_seed(6)
    flow = make_tarflow().to(dev)

    def nll(x, y):
        z = norm(latents(x))
        z = z + 0.05 * torch.randn_like(z)
        yd = torch.where(torch.rand(x.shape[0], device=dev) < 0.1, torch.full_like(y, -1), y)
        zz, ld = tarflow_forward(flow, z, yd)
        return TG.Model.loss(zz, ld)

    return flow, nll, dict(betas=(0.9, 0.95), wd=1e-4, clip=1.0), lambda total: warmup_cosine(1e-4, min(500, total), total)


# name → (builder, batch seed, sampling variants: (key, sampler(model, labels, generator)))
GENERATORS = {
    "lightningdit-fae": (train_dit, 5, [("cfg", lambda m, y, g: dit_sample(m, y, cfg=2.5, gen=g)), ("none", lambda m, y, g: dit_sample(m, y, gen=g))]),
    "tarflow-fae": (train_tarflow, 6, [("guided", lambda m, y, g: tarflow_sample(m, y, guidance=1.0, gen=g)), ("none", lambda m, y, g: tarflow_sample(m, y, gen=g))]),
}


def main():
    global DEVICE, PRECISION, DEADLINE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", required=True, help="an ssl-encoder run directory or model.safetensors (student weights)")
    ap.add_argument("--encoder-ready", default=None, help="wait for this file before reading --encoder (the classifier trains meanwhile)")
    ap.add_argument("--plan", required=True, help="JSON {stage: {steps, total}} (Kiln's step counts)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32", help="bf16: torch.autocast for training and sampling (Kiln's default on cuda)")
    ap.add_argument("--count", type=int, default=1000, help="samples for FD / accuracy (fixed N)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--train-limit", type=int, default=60000)
    ap.add_argument("--probe-train", type=int, default=10000, help="train images for the feature probes")
    ap.add_argument("--probe-epochs", type=int, default=30)
    ap.add_argument("--test-limit", type=int, default=10000, help="test images for the reconstruction metrics and probes")
    ap.add_argument("--parallel-generators", action="store_true", help="train each generator in its own process from stage Ia on (beside Ib, fine-tune, eval)")
    ap.add_argument("--deadline", type=float, default=0.0, help="Unix time: every training loop stops there (a window's safety net)")
    ap.add_argument("--reserve", type=float, default=20.0, help="seconds before --deadline at which the generators stop training (to sample and score)")
    ap.add_argument("--curve-every", type=int, default=0, help="LightningDiT: keep its weights every K steps; FD of each (item 3's curve, as Kiln's CURVES=1)")
    ap.add_argument("--curve-count", type=int, default=500, help="samples per curve point (no guidance)")
    ap.add_argument("--curve-steps", type=int, default=25, help="Euler grid points per curve sample")
    ap.add_argument("--export-fae", default=None, help="write the trained FAE as Kiln-readable checkpoints DIR/ia (adapter, feature decoder) and DIR/ft (pixel decoder)")
    ap.add_argument("--state-in", default=None, help="(internal) stage Ia's state and latent stats: train only --only")
    ap.add_argument("--only", default=None, choices=list(GENERATORS), help="(internal) train only this generator, save its weights")
    a = ap.parse_args()
    DEVICE = a.device
    PRECISION = a.precision
    DEADLINE = a.deadline - a.reserve if a.deadline else 0.0  # every loop stops there, leaving time to sample and score
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = json.loads(Path(a.plan).read_text())
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    def steps_of(name):
        p = plan.get(name)
        return (int(p["steps"]), int(p.get("total", p["steps"]))) if p else (0, 0)

    dev = a.device
    xtr, ytr = fashion("train")
    xte, yte = fashion("test")
    xtr, ytr = xtr[:a.train_limit], ytr[:a.train_limit]
    xte_all = xte
    xte, yte = xte[:a.test_limit], yte[:a.test_limit]
    batches = lambda seed=0: Batches(xtr, ytr, a.batch, seed, dev)  # noqa: E731
    res: dict = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__, "precision": a.precision, "stages": {}}

    def save():  # after every stage: a run killed at its time limit still leaves what it measured
        (out / "torch_metrics.json").write_text(json.dumps(res, indent=2) + "\n")
        (out / "torch_log.txt").write_text("\n".join(lines) + "\n")

    def timed(name, steps, fn):  # a stage's metrics: steps taken, final loss (means of the last 10 and 100 steps), training seconds
        ls, secs, done = fn()
        mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
        res["stages"][name] = {"steps": done, "steps_planned": steps, "loss": mean(ls[-10:]), "loss_last100": mean(ls[-100:]), "train_s": secs}
        (out / f"losses-{name}.json").write_text(json.dumps(ls))  # every step's loss (the statistics of both sides from one list)
        save()
        return res["stages"][name]

    # the classifier first: it needs no encoder (the SSL encoder may still be training)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.GELU(), nn.Linear(1024, 512), nn.GELU(), nn.Linear(512, 10)).to(dev)
    # torch's default Linear init is Kiln's nn.Linear default (models/mlp.ts: U(±1/√fan_in) weight and bias)
    steps, total = steps_of("classifier")
    if steps and not a.only:
        st = timed("classifier", steps, lambda: train_loop("classifier", list(clf.parameters()), lambda x, y: F.cross_entropy(clf(x), y), batches(), steps,
                                                            warmup_cosine(1e-3, min(200, total), total), wd=0.05, log=log))
        with torch.no_grad():
            st["test_accuracy"] = float(torch.cat([(clf(xte[i:i + 1000].to(dev)).argmax(-1).cpu() == yte[i:i + 1000]) for i in range(0, xte.shape[0], 1000)]).float().mean())
        log(f"classifier test accuracy {100 * st['test_accuracy']:.2f}%")
        save()

    if a.encoder_ready:
        t0 = time.time()
        while not Path(a.encoder_ready).exists():
            if a.deadline and time.time() > a.deadline:
                raise SystemExit(f"the encoder ({a.encoder_ready}) did not appear before the deadline")
            time.sleep(0.5)
        log(f"waited {time.time() - t0:.1f} s for the SSL encoder")
    enc_path = Path(a.encoder)
    if enc_path.is_dir():
        ck = sorted((enc_path / "checkpoints").glob("step-*")) if (enc_path / "checkpoints").exists() else [enc_path]
        enc_path = ck[-1] / "model.safetensors"
    fae = make_fae(load_file(str(enc_path))).to(dev)
    enc = fae.encoder
    enc.eval()
    feats = lambda x: enc(x)  # noqa: E731

    @torch.no_grad()
    def latents(x):
        return fae.adapter(feats(x))[0].transpose(1, 2).reshape(x.shape[0], 4, 7, 7)

    # stage Ia (or, in a generator's process, its result)
    if a.state_in:
        st = torch.load(a.state_in, map_location=dev)
        fae.load_state_dict(st["fae"])
        stats = st["stats"]
    else:
        steps, total = steps_of("fae-stage-ia")
        ia_params = list(fae.adapter.parameters()) + list(fae.feature_decoder.parameters())

        def ia_loss(x, y):
            with torch.no_grad():
                f = feats(x)
            mean, logvar = fae.adapter(f)
            z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
            return F.mse_loss(fae.feature_decoder(z), f) + LOSS["klWeight"] * kl(mean, logvar)

        if steps:
            timed("fae-stage-ia", steps, lambda: train_loop("fae-stage-ia", ia_params, ia_loss, batches(1), steps, warmup_cosine(2e-4, min(200, total), total), log=log))
        # latents, normalized per channel with the stats of the first 4 batches (as cli/jobs/tasks.ts latentStats)
        it = iter(batches(4))
        z0 = torch.cat([latents(next(it)[0]) for _ in range(4)])
        stats = (z0.mean(dim=(0, 2, 3)), z0.std(dim=(0, 2, 3), unbiased=False).clamp(min=1e-6))
    norm = lambda z: (z - stats[0].view(1, -1, 1, 1)) / stats[1].view(1, -1, 1, 1)  # noqa: E731

    def export_fae(sub, prefixes):  # a Kiln-readable checkpoint (the same keys) of these FAE parts: --export-fae DIR/sub/model.safetensors
        from safetensors.torch import save_file
        d = Path(a.export_fae) / sub
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().float().contiguous().cpu() for k, v in fae.state_dict().items() if k.startswith(prefixes)}, str(d / "model.tmp"))
        os.replace(d / "model.tmp", d / "model.safetensors")  # whole or absent: a reader may be waiting for it
        log(f"FAE parts {', '.join(prefixes)} exported to {d}")

    if a.export_fae and not a.state_in:
        export_fae("ia", ("adapter.", "feature_decoder."))

    def train_generator(name):
        """Train one generator (GENERATORS[name]) on the latents; its metrics go to res["stages"][name]."""
        steps, total = steps_of(name)
        build, seed, _ = GENERATORS[name]
        model, loss_fn, opt_args, schedule = build(norm, latents, dev)
        snaps = []  # (step, weights on the host) every --curve-every steps (LightningDiT)
        every = a.curve_every if name == "lightningdit-fae" else 0
        keep = lambda step: snaps.append((step, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}))  # noqa: E731
        timed(name, steps, lambda: train_loop(name, list(model.parameters()), loss_fn, batches(seed), steps, schedule(total), log=log, every=every, snapshot=keep, **opt_args))
        return model, snaps

    if a.only:  # a generator's own process: train it, save its weights, leave the sampling to the parent
        model, snaps = train_generator(a.only)
        torch.save({"final": model.state_dict(), "snapshots": snaps}, out / "weights.pt")
        save()
        return

    children = {}
    gens = [g for g in GENERATORS if steps_of(g)[0]]
    if a.parallel_generators and gens:
        # each generator in its own process from here on (same FAE, latent stats and seeds), beside Ib, fine-tune, eval
        import subprocess
        torch.save({"fae": fae.state_dict(), "stats": stats}, out / "state-ia.pt")

        def die_with_parent():  # a parent killed at its time limit takes the child with it (Linux PR_SET_PDEATHSIG)
            import ctypes
            import signal
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)

        for g in gens:
            args = [sys.executable, __file__, "--encoder", str(enc_path), "--plan", a.plan, "--out", str(out / g), "--device", dev,
                    "--precision", a.precision, "--batch", str(a.batch), "--train-limit", str(a.train_limit), "--deadline", str(a.deadline),
                    "--reserve", str(a.reserve), "--curve-every", str(a.curve_every), "--state-in", str(out / "state-ia.pt"), "--only", g]
            (out / g).mkdir(exist_ok=True)
            children[g] = subprocess.Popen(args, stdout=open(out / f"{g}.log", "w"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            log(f"{g}: started in its own process (pid {children[g].pid}, log {out / (g + '.log')})")

    pd_params = list(fae.pixel_decoder.parameters())

    def ib_loss(x, y, source="encoder"):
        with torch.no_grad():
            f = feats(x)
            inp = f + LOSS["sigma"] * torch.randn_like(f) if source == "encoder" else fae.feature_decoder(fae.adapter(f)[0])
        xh = fae.pixel_decoder(inp)
        return LOSS["l1Weight"] * (xh - x).abs().mean() + LOSS["perceptualWeight"] * F.mse_loss(enc(xh), f)

    steps, total = steps_of("fae-stage-ib")
    if steps:
        timed("fae-stage-ib", steps, lambda: train_loop("fae-stage-ib", pd_params, ib_loss, batches(2), steps, warmup_cosine(2e-4, min(200, total), total), betas=(0.5, 0.9), log=log))
    steps, total = steps_of("fae-pixel-finetune")
    if steps:
        timed("fae-pixel-finetune", steps, lambda: train_loop("fae-pixel-finetune", pd_params, lambda x, y: ib_loss(x, y, "feature_decoder"), batches(3), steps, lambda s: 5e-5, log=log))

    # reconstruction metrics (kiln eval fae)
    t0 = time.perf_counter()
    with torch.no_grad():
        xt = xte.to(dev)
        rec = torch.cat([fae.pixel_decoder(fae.feature_decoder(fae.adapter(feats(xt[i:i + 1000]))[0])) for i in range(0, xt.shape[0], 1000)]).clamp(-1, 1)
        m_psnr, m_ssim = float(psnr(xt, rec).mean()), float(ssim(xt, rec).mean())
        ptr = xtr[:a.probe_train].to(dev)
        raw_tr, raw_te = pooled(enc, ptr), pooled(enc, xt)
        recf = lambda x: torch.cat([fae.feature_decoder(fae.adapter(feats(x[i:i + 1000]))[0]).mean(1) for i in range(0, x.shape[0], 1000)])  # noqa: E731
        rec_tr, rec_te = recf(ptr), recf(xt)
    ytr_d, yte_d = ytr[:a.probe_train].to(dev), yte.to(dev)
    with torch.enable_grad():
        p_raw = linear_probe(raw_tr, ytr_d, raw_te, yte_d, epochs=a.probe_epochs)
        p_rec = linear_probe(rec_tr, ytr_d, rec_te, yte_d, epochs=a.probe_epochs)
    res["fae"] = {"psnr": m_psnr, "ssim": m_ssim, "probe_raw": p_raw, "probe_reconstructed": p_rec, "probe_train": a.probe_train, "seconds": time.perf_counter() - t0}
    log(f"FAE: PSNR {m_psnr:.2f} dB, SSIM {m_ssim:.4f}; probe raw {100 * p_raw:.2f}%, reconstructed {100 * p_rec:.2f}%")
    save()

    if a.export_fae:
        export_fae("ft", ("pixel_decoder.",))

    N = a.count
    real = pooled(enc, xte_all[: 2 * N].to(dev))
    res["fd_floor"] = floor = frechet(real[:N], real[N:2 * N])
    # what the decoders alone cost: FD of the reconstructions of test[N:2N] against test[0:N] (as the floor's pair)
    res["fd_reconstructions"] = frechet(pooled(enc, rec[N:2 * N]), real[:N]) if rec.shape[0] >= 2 * N else None
    log(f"FD floor {floor:.3f}, FD of FAE reconstructions {res['fd_reconstructions'] if res['fd_reconstructions'] is None else round(res['fd_reconstructions'], 3)}")
    labels = (torch.arange(N) % 10).to(dev)
    kept = {}

    def sample_and_score(name, model):
        """Every sampling variant of one generator: N class-conditional samples (labels cycling 0–9, one seeded
        generator across the variants), decoded through the FAE, scored: FD against test[0:N], classifier accuracy."""
        t0 = time.perf_counter()
        model.eval()
        g = torch.Generator().manual_seed(0)
        st = res["stages"][name]
        for key, sampler in GENERATORS[name][2]:
            with autocast():
                imgs = decode(fae, sampler(model, labels, g), stats).float()
            with torch.no_grad():
                acc = float((clf(imgs).argmax(-1) == labels).float().mean())
            st[key] = {"fd": frechet(pooled(enc, imgs)[:N], real[:N]), "accuracy": acc}
            kept[f"{name}.{key}"] = imgs[:20].detach().cpu().clone()
        sync()
        st["sample_s"] = time.perf_counter() - t0
        log(f"{name}: " + ", ".join(f"{k} FD {st[k]['fd']:.3f} accuracy {100 * st[k]['accuracy']:.1f}%" for k, _ in GENERATORS[name][2]) + f" (floor {floor:.3f})")
        save()

    for g in gens:
        if g in children:
            rc = children[g].wait()
            f = out / g / "torch_metrics.json"
            if rc != 0 or not (out / g / "weights.pt").exists():
                log(f"{g}: its process exited {rc} without weights (log {out / (g + '.log')})")
                if f.exists():
                    res["stages"].update({k: v for k, v in json.loads(f.read_text())["stages"].items() if k == g})
                continue
            res["stages"][g] = json.loads(f.read_text())["stages"][g]
            lines.extend((out / g / "torch_log.txt").read_text().splitlines())
            model = GENERATORS[g][0](norm, latents, dev)[0]
            w = torch.load(out / g / "weights.pt", map_location=dev)
            model.load_state_dict(w["final"])
            snaps = w["snapshots"]
            (out / g / "weights.pt").unlink()
        else:
            model, snaps = train_generator(g)
        sample_and_score(g, model)
        if snaps:  # item 3's curve on this side: FD (N = --curve-count, no guidance) of every kept LightningDiT
            n = a.curve_count
            res["curve"] = {"count": n, "grid": a.curve_steps, "floor": frechet(real[:n], real[n:2 * n]), "points": []}
            g_ = torch.Generator().manual_seed(0)
            for step, sd in snaps:
                model.load_state_dict(sd)
                with autocast():
                    imgs = decode(fae, dit_sample(model, labels[:n], steps=a.curve_steps, gen=g_), stats).float()
                res["curve"]["points"].append({"step": step, "fd": frechet(pooled(enc, imgs), real[:n])})
            log("lightningdit-fae curve: " + ", ".join(f"{q['step']}: {q['fd']:.3f}" for q in res["curve"]["points"]) + f" (floor {res['curve']['floor']:.3f})")
            save()
    (out / "state-ia.pt").unlink(missing_ok=True)
    if kept:
        from safetensors.torch import save_file
        save_file(kept, str(out / "torch_samples.safetensors"))  # 20 images of each variant (2 per class)
    save()
    print("TORCH " + json.dumps(res))


if __name__ == "__main__":
    main()
