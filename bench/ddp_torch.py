"""PyTorch DDP baseline for bench/scaling.sh: LightningDiT training steps (the bench/torch_baseline.py
program: flow-matching loss, fused AdamW, EMA), bf16 autocast, eager, one process per GPU under
torchrun (or RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set by hand), each rank GLOBAL/WORLD of the
global batch. DDP with its defaults (25 MiB buckets reduced during the backward, f32 gradients) and
gradient_as_bucket_view. At world size 1 it also times the same step without DDP (what DDP's hooks
and its all-reduce cost there). Rank 0 prints one JSON line per spec.

  torchrun --nproc_per_node N bench/ddp_torch.py lightningdit:256 lightningdit_xl:128   (GLOBAL batch)

BENCH_STEPS: timed steps (default 10, after 3 warm-up steps). KILN_GPU_AFTER: see gate().
"""
import json
import os
import sys
import time
from pathlib import Path

specs = [a for a in sys.argv[1:] if not a.startswith("--")]
sys.argv = [sys.argv[0], "--bf16"]  # torch_baseline reads its flags from argv at import; no specs: it runs nothing
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

local = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
torch.cuda.set_device(local)
import torch_baseline as tb  # noqa: E402

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29533")
rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", local))


def gate():
    """KILN_GPU_AFTER=FILE: wait for FILE before the first step (the set-up, imports and NCCL's init
    run before; another process's timed steps end first, so no two timings overlap)."""
    after = os.environ.get("KILN_GPU_AFTER")
    while after and not os.path.exists(after):
        time.sleep(0.05)


def timed(step, n):
    gate()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    dist.barrier()
    t = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1000


def make_step(m, loss_fn, ema_decay, params):
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
    ema = [p.detach().clone() for p in params] if ema_decay else None

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = loss_fn()
        loss.backward()
        opt.step()
        if ema:
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - ema_decay)
    return step


def fm_closure(model, per):
    x1 = torch.randn(per, 32, 16, 16, device="cuda")
    y = torch.randint(0, 1000, (per,), device="cuda")

    def loss():
        x0 = torch.randn(x1.shape, device="cuda")
        t = torch.sigmoid(torch.randn(per, device="cuda"))
        return tb.fm_loss(model, x1, x0, t, y)[0]
    return loss


for spec in specs:
    name, b = spec.split(":")
    glob = int(b)
    if glob % world:
        raise SystemExit(f"global batch {glob} is not a multiple of the world size {world}")
    per = glob // world
    torch.manual_seed(rank)
    m, _, ema_decay = tb.program(name, per)
    res = {"program": name, "worldSize": world, "globalBatch": glob, "perRankBatch": per, "device": torch.cuda.get_device_name(), "torch": torch.__version__}
    n = int(os.environ.get("BENCH_STEPS", "10"))
    if world == 1:
        res["noDdpStepMs"] = round(timed(make_step(m, fm_closure(m, per), ema_decay, list(m.parameters())), n), 3)
    ddp = torch.nn.parallel.DistributedDataParallel(m, device_ids=[local], gradient_as_bucket_view=True)
    ms = timed(make_step(ddp, fm_closure(ddp, per), ema_decay, list(ddp.parameters())), n)
    res["ddpStepMs"] = round(ms, 3)
    res["samplesPerS"] = round(glob / ms * 1000, 1)
    res["perGpuSamplesPerS"] = round(per / ms * 1000, 1)
    if rank == 0:
        print(json.dumps(res), flush=True)
    del ddp, m
    torch.cuda.empty_cache()
dist.destroy_process_group()
