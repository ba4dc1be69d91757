"""PyTorch baseline of bench/stepExec.ts `tarflow_sample:BATCH` (issue 11): one KV-cached TarFlow sampling
step of the deep block of the faeLatentP1 preset (STARFlow deep-shallow: the block sampled first, 16 layers;
256 tokens of 32 channels, width 1024, 16 heads of 64, MLP x4, 1000 classes, soft clip 4, softplus scale),
the same computation as Kiln's step program (models/tarflow/graphs.ts blockStepGraph): the token at
position `pos` (a device scalar, so one compiled program serves every position) → proj_in + pos_embed[pos]
+ class_embed[y] → 16 pre-LN layers, each writing its k, v into a static f32 cache [B, 16, 256, 64] at pos
(index_copy_) and attending to the keys at positions <= pos (SDPA with a mask) → proj_out, soft clip →
(scale = softplus(a + 0.5413), shift = b). bf16 autocast (f32 weights and caches, bf16 matmul and SDPA
operands), as Kiln's default on cuda. Parameters random (the step's time does not depend on them).

  python3 bench/tarflow_sample_torch.py [--compile | --compile=reduce-overhead] [BATCH]

Prints one JSON line: `stepMs` (per step, 50 steps after 5 warm-up, positions cycling, one sync at the
end), `firstStepMs` (torch.compile compiles there), `peakMiB` / `reservedMiB` (torch.cuda max memory
allocated / reserved over the timed steps), `compiledGraphs` (dynamo's counters over all 55 steps: unique graphs,
frames compiled, recompiles; 1, 1, 0 when no position recompiled: the compiled function takes the position
as a device tensor, dynamic=False). GPU turn-taking: bench/gpu_lock.py (after the first steps).
"""
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_lock import acquire  # noqa: E402

T, CIN, C, HD, LAYERS, EXP, CLASSES, CLIP = 256, 32, 1024, 64, 16, 4, 1000, 4.0
H = C // HD
INV_SOFTPLUS_1 = 0.541324854612918


class Layer(nn.Module):
    def __init__(self, batch):
        super().__init__()
        self.norm1, self.qkv, self.proj = nn.LayerNorm(C), nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.norm2, self.fc1, self.fc2 = nn.LayerNorm(C), nn.Linear(C, EXP * C), nn.Linear(EXP * C, C)
        self.register_buffer("k", torch.zeros(batch, H, T, HD))
        self.register_buffer("v", torch.zeros(batch, H, T, HD))

    def forward(self, x, pos, mask):
        B = x.size(0)
        q, k, v = self.qkv(self.norm1(x)).reshape(B, 1, 3 * H, HD).transpose(1, 2).chunk(3, dim=1)
        self.k.index_copy_(2, pos, k.float())
        self.v.index_copy_(2, pos, v.float())
        o = F.scaled_dot_product_attention(q, self.k, self.v, attn_mask=mask, scale=HD**-0.5)
        x = x + self.proj(o.transpose(1, 2).reshape(B, 1, C))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class DeepBlockStep(nn.Module):
    def __init__(self, batch):
        super().__init__()
        self.proj_in = nn.Linear(CIN, C)
        self.pos_embed = nn.Parameter(torch.randn(T, C) * 1e-2)
        self.class_embed = nn.Parameter(torch.randn(CLASSES, 1, C) * 1e-2)
        self.sos_embed = nn.Parameter(torch.randn(1, 1, CIN))
        self.layers = nn.ModuleList([Layer(batch) for _ in range(LAYERS)])
        self.proj_out = nn.Linear(C, 2 * CIN)
        self.register_buffer("ar", torch.arange(T))

    def forward(self, token, pos, y):
        tok = torch.where(pos == 0, self.sos_embed, token)  # the sos token at position 0
        h = self.proj_in(tok) + self.pos_embed.index_select(0, pos) + self.class_embed[y]
        mask = (self.ar <= pos).view(1, 1, 1, T)
        for layer in self.layers:
            h = layer(h, pos, mask)
        o = CLIP * torch.tanh(self.proj_out(h) / CLIP)
        a, b = o.chunk(2, dim=-1)
        return F.softplus(a + INV_SOFTPLUS_1), b


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    mode = next((a.split("=", 1)[1] if "=" in a else "default" for a in sys.argv[1:] if a.startswith("--compile")), None)
    batch = int(args[0]) if args else 64
    torch.manual_seed(0)
    m = DeepBlockStep(batch).cuda()
    token = torch.randn(batch, 1, CIN, device="cuda") * 0.02
    y = torch.arange(batch, device="cuda") % CLASSES
    poss = [torch.tensor([p], device="cuda") for p in range(T)]

    def fwd(token, pos, y):
        with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            return m(token, pos, y)

    # The compiled function takes the position as a device tensor of a fixed shape (not the Python int that
    # picked it from a list: dynamo specialized on the int and compiled again at every position, then fell
    # back to eager at its recompile limit), and dynamic=False: one static-shape graph for every position.
    run = torch.compile(fwd, mode=None if mode == "default" else mode, dynamic=False) if mode else fwd

    def step(p):
        return run(token, poss[p], y)
    say = lambda what: print(f"[tarflow_sample_torch {mode or 'eager'} {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)  # noqa: E731
    t = time.perf_counter()
    step(0)
    torch.cuda.synchronize()
    first = (time.perf_counter() - t) * 1000
    say(f"first step {first:.0f} ms")
    for p in range(1, 5):
        step(p)
    torch.cuda.synchronize()
    say("warm; waiting for the GPU")
    release = acquire()
    say("timing")
    try:
        torch.cuda.reset_peak_memory_stats()
        n = 50
        t = time.perf_counter()
        for i in range(n):
            out = step((5 + i) % T)
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t) / n * 1000
    finally:
        release()
    finite = bool(torch.isfinite(out[0]).all() and torch.isfinite(out[1]).all())
    # How many graphs dynamo compiled over the first steps and the 50 timed ones (1 when nothing recompiled).
    graphs = None
    if mode:
        from torch._dynamo.utils import counters
        graphs = {"uniqueGraphs": counters["stats"].get("unique_graphs"), "framesOk": counters["frames"].get("ok"), "recompiles": sum(counters["recompiles"].values()) if "recompiles" in counters else None}
    print(json.dumps({"program": f"tarflow_sample faeLatentP1 deep block ({LAYERS} layers), torch", "batch": batch, "compiled": mode or False,
                      "stepMs": round(ms, 3), "firstStepMs": round(first), "peakMiB": round(torch.cuda.max_memory_allocated() / 2**20),
                      "reservedMiB": round(torch.cuda.max_memory_reserved() / 2**20), "finite": finite, "compiledGraphs": graphs,
                      "params": sum(p.numel() for p in m.parameters()), "device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
