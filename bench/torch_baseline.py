"""PyTorch baselines for bench/trainStep.ts: the same programs (model, loss, AdamW; EMA where Kiln's
program has it), same batch, timed on the same GPU in the same run. Prints one JSON line per program,
with the peak memory PyTorch allocated during the timed steps.

  python3 bench/torch_baseline.py mlp:128 block:8 lightningdit:16            f32, TF32 off (Kiln f32)
  python3 bench/torch_baseline.py --bf16 lightningdit:128 lightningdit_xl:64  bf16 autocast (f32 master
      weights, matmuls and SDPA attention in bf16), eager
  python3 bench/torch_baseline.py --bf16 --compile lightningdit:128           the same under torch.compile

AdamW is PyTorch's fused CUDA AdamW (what a user picks on a GPU). `firstStepMs` is the first step's
wall time (torch.compile compiles there); `peakMiB` the most memory PyTorch's tensors took during the
timed steps (torch.cuda.max_memory_allocated), `reservedMiB` the most its caching allocator held.
KILN_GPU_LOCK=DIR: after the first step, hold the GPU (an atomic mkdir of DIR, as bench/trainStep.ts
does) for the warm-up and the timed steps, so that other processes can compile meanwhile
(bench/lightningdit.sh); KILN_GPU_READY=FILE is touched when this process is ready to time, and with
KILN_GPU_AFTER=FILE it waits for that file before taking the GPU.
"""
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "golden"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import lightningdit_golden  # noqa: E402
from gpu_lock import acquire  # noqa: E402
from lightningdit_golden import LightningDiT, fm_loss  # noqa: E402


def _timestep_embedding(self, t, max_period=10000):
    """The reference TimestepEmbedder.forward with its frequency table made on t's device: under
    torch.compile, the default-device mode does not reach torch.arange (dynamo then sees a CPU tensor
    times a CUDA tensor and fails); the computation is the same."""
    half = self.freq // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


lightningdit_golden.TimestepEmbedder.forward = _timestep_embedding

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = __import__("os").environ.get("KILN_TORCH_DEVICE", "cuda")
torch.set_default_device(dev)  # the reference modules create tensors (frequencies, grids) on the default device


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(784, 256), nn.Linear(256, 128), nn.Linear(128, 10)])

    def forward(self, x):
        for i, l in enumerate(self.layers):
            x = l(x)
            if i < 2:
                x = F.gelu(x)
        return x


class Block(nn.Module):
    def __init__(self, d=768, h=12):
        super().__init__()
        self.h = h
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, N, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(B, N, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)), approximate="tanh"))


def program(name, batch):
    g = torch.Generator(device=dev).manual_seed(0)
    if name == "mlp":
        m = Mlp().to(dev)
        x, y = torch.randn(batch, 784, device=dev), torch.randint(0, 10, (batch,), device=dev)
        return m, lambda: F.cross_entropy(m(x), y), None
    if name == "block":
        m = Block().to(dev)
        x = torch.randn(batch, 256, 768, device=dev)
        return m, lambda: m(x).square().mean(), None
    if name in ("lightningdit", "lightningdit_xl"):
        # B/1: hidden 768, depth 12, 12 heads; XL/1: hidden 1152, depth 28, 16 heads.
        hidden, depth, heads = (768, 12, 12) if name == "lightningdit" else (1152, 28, 16)
        # KILN_BENCH_DEPTH=N: the same model with N blocks (a peak-memory slope per block where the whole
        # model's torch.compile, ~120 s for XL/1, does not fit a GPU window).
        depth = int(os.environ.get("KILN_BENCH_DEPTH", depth))
        m = LightningDiT(16, 1, 32, hidden, depth, heads, 1000, use_swiglu=True, use_rope=True, use_rmsnorm=True).to(dev)
        x1, y = torch.randn(batch, 32, 16, 16, device=dev), torch.randint(0, 1000, (batch,), device=dev)

        def loss():
            x0 = torch.randn(x1.shape, device=dev)
            t = torch.sigmoid(torch.randn(batch, device=dev))
            return fm_loss(m, x1, x0, t, y)[0]
        return m, loss, 0.9999
    raise SystemExit(f"unknown program {name}")


def sync():
    if dev == "cuda":
        torch.cuda.synchronize()


BF16 = "--bf16" in sys.argv
COMPILE = "--compile" in sys.argv


def bench(spec):
    name, b = spec.split(":")
    batch = int(b)
    m, loss_fn, ema_decay = program(name, batch)
    if BF16:
        inner = loss_fn

        def loss_fn():
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                return inner()
    if COMPILE:
        loss_fn = torch.compile(loss_fn)  # forward + loss (autocast inside the compiled region); backward by AOTAutograd
    params = [p for p in m.parameters() if p.requires_grad]
    dit = name.startswith("lightningdit")
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95) if dit else (0.9, 0.999), weight_decay=0.0 if dit else 0.01,
                            fused=dev == "cuda")
    ema = [p.detach().clone() for p in params] if ema_decay else None

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()
        if ema:
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - ema_decay)

    # The first step (torch.compile compiles there) before holding the GPU: nothing is timed yet.
    t = time.perf_counter()
    step()
    sync()
    first = (time.perf_counter() - t) * 1000
    release = acquire()
    try:
        for _ in range(2):
            step()
        sync()
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        n = 10 if dit else 20
        t = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        ms = (time.perf_counter() - t) / n * 1000
    finally:
        release()
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else 0
    reserved = torch.cuda.max_memory_reserved() / 2**20 if dev == "cuda" else 0
    return {"program": name, "batch": batch, "depth": int(os.environ.get("KILN_BENCH_DEPTH", 0)) or None, "precision": "bf16" if BF16 else "f32", "compiled": COMPILE, "stepMs": round(ms, 3),
            "firstStepMs": round(first), "peakMiB": round(peak), "reservedMiB": round(reserved),
            "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__}


for spec in [a for a in sys.argv[1:] if not a.startswith("--")]:
    print(json.dumps(bench(spec)), flush=True)
