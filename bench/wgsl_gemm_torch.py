"""PyTorch baselines for bench/wgslGemmF16.ts (same call, same GPU): torch.matmul in fp32 with TF32 off,
fp16 and bf16 (f32 accumulation, output in the input dtype) at the same shapes and layouts
(transposed operands are transposed views), CUDA events. One JSON line per (shape, dtype).

  python3 bench/wgsl_gemm_torch.py cube8192 cube4096 B_qkv_fwd ...
"""
import json
import sys

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
SHAPES = {
    "cube1024": (1024, 1024, 1024, "nn"), "cube4096": (4096, 4096, 4096, "nn"), "cube8192": (8192, 8192, 8192, "nn"),
    "B_qkv_fwd": (32768, 2304, 768, "nt"), "B_fc1_fwd": (32768, 3072, 768, "nt"), "B_fc2_fwd": (32768, 768, 3072, "nt"),
    "B_fc1_dx": (32768, 768, 3072, "nn"), "B_fc1_dw": (3072, 768, 32768, "tn"),
    "XL_qkv_fwd": (16384, 3456, 1152, "nt"), "XL_fc1_fwd": (16384, 4608, 1152, "nt"), "XL_fc2_fwd": (16384, 1152, 4608, "nt"),
    "XL_fc1_dx": (16384, 1152, 4608, "nn"), "XL_fc1_dw": (4608, 1152, 16384, "tn"),
}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}

for name in sys.argv[1:] or list(SHAPES):
    m, n, k, layout = SHAPES[name]
    for dn, dt in DTYPES.items():
        r = lambda *s: torch.rand(*s, device="cuda", dtype=dt) * 2 - 1  # noqa: E731
        a = r(k, m).t() if layout == "tn" else r(m, k)
        b = r(n, k).t() if layout == "nt" else r(k, n)
        for _ in range(3):
            torch.matmul(a, b)
        torch.cuda.synchronize()
        flop = 2 * m * n * k
        reps = max(3, min(50, round(0.3 / (flop / (100e12 if dt != torch.float32 else 40e12)))))
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            torch.matmul(a, b)
        e.record()
        torch.cuda.synchronize()
        ms = s.elapsed_time(e) / reps
        print(json.dumps({"bench": "torch-gemm", "shape": name, "dtype": dn, "m": m, "n": n, "k": k, "ms": ms, "tflops": flop / (ms * 1e-3) / 1e12, "device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
        del a, b
