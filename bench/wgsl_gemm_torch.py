"""PyTorch baselines for bench/wgslGemmF16.ts (same call, same GPU): torch.matmul in fp32 with TF32 off,
fp16 and bf16 (f32 accumulation, output in the input dtype) at the same shapes and layouts
(transposed operands are transposed views), timed by bench/gemm_torch.py's time_matmul. One JSON line
per (shape, dtype). DTYPES=f16,bf16 picks the dtypes.

  python3 bench/wgsl_gemm_torch.py cube8192 cube4096 B_qkv_fwd ...
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm_torch import SHAPES as GEMM_SHAPES, operands, time_matmul  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
SHAPES = {"cube1024": (1024, 1024, 1024, "nn"), "cube8192_nt": (8192, 8192, 8192, "nt"), **GEMM_SHAPES}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
wanted = os.environ.get("DTYPES", ",".join(DTYPES)).split(",")

for name in sys.argv[1:] or list(SHAPES):
    m, n, k, layout = SHAPES[name]
    for dn in wanted:
        ms = time_matmul(*operands(m, n, k, layout, DTYPES[dn]))
        flop = 2 * m * n * k
        print(json.dumps({"bench": "torch-gemm", "shape": name, "dtype": dn, "m": m, "n": n, "k": k, "ms": ms, "tflops": flop / (ms * 1e-3) / 1e12, "device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
        torch.cuda.empty_cache()
