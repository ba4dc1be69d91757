"""cuBLAS baseline for bench/gemm.ts: torch.matmul in bf16 (f32 accumulate, bf16 out) at the same
shapes and layouts (transposed operands are transposed views, as cuBLAS takes them), timed with CUDA
events on the same GPU in the same call. Prints one JSON line per GEMM. `operands` and `time_matmul`
are the one event-timed matmul loop of the GEMM baselines (bench/wgsl_gemm_torch.py uses them too).

  python3 bench/gemm_torch.py cube4096 B_fc1_fwd ...
"""
import json
import sys

import torch

SHAPES = {
    "cube4096": (4096, 4096, 4096, "nn"), "cube8192": (8192, 8192, 8192, "nn"),
    "B_qkv_fwd": (32768, 2304, 768, "nt"), "B_fc1_fwd": (32768, 3072, 768, "nt"), "B_fc2_fwd": (32768, 768, 3072, "nt"),
    "B_fc1_dx": (32768, 768, 3072, "nn"), "B_fc1_dw": (3072, 768, 32768, "tn"),
    "XL_qkv_fwd": (16384, 3456, 1152, "nt"), "XL_fc1_fwd": (16384, 4608, 1152, "nt"), "XL_fc2_fwd": (16384, 1152, 4608, "nt"),
    "XL_fc1_dx": (16384, 1152, 4608, "nn"), "XL_fc1_dw": (4608, 1152, 16384, "tn"),
}


def operands(m, n, k, layout, dtype):
    """a [m, k] and b [k, n] uniform in [-1, 1), as transposed views where the layout says (tn: a, nt: b)."""
    r = lambda *s: torch.rand(*s, device="cuda", dtype=dtype) * 2 - 1  # noqa: E731
    a = r(k, m).t() if layout == "tn" else r(m, k)
    b = r(n, k).t() if layout == "nt" else r(k, n)
    return a, b


def time_matmul(a, b):
    """ms per torch.matmul(a, b): 3 warm-up calls, one timed call to size the loop (~300 ms, 5..200 reps), then the loop between two CUDA events."""
    for _ in range(3):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    torch.matmul(a, b)
    e.record()
    torch.cuda.synchronize()
    reps = max(5, min(200, int(300 / max(s.elapsed_time(e), 1e-3))))
    s.record()
    for _ in range(reps):
        torch.matmul(a, b)
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / reps


def bench(name):
    m, n, k, layout = SHAPES[name]
    ms = time_matmul(*operands(m, n, k, layout, torch.bfloat16))
    return {"gemm": name, "ms": round(ms, 4), "tflops": round(2 * m * n * k / ms / 1e9, 1), "device": torch.cuda.get_device_name(), "torch": torch.__version__}


if __name__ == "__main__":
    for name in sys.argv[1:] or list(SHAPES):
        print(json.dumps(bench(name)), flush=True)
