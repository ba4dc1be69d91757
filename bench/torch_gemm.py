"""PyTorch fp32 GEMM (TF32 off) at n×n×n, CUDA events; the baseline for bench/wgslGemm.ts (same call)."""
import json, os, torch
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
for n in [int(s) for s in os.environ.get("SIZES", "1024,4096,8192").split(",")]:
    a = torch.randn(n, n, device="cuda"); b = torch.randn(n, n, device="cuda")
    for _ in range(3): a @ b
    torch.cuda.synchronize()
    reps = 50 if n <= 1024 else 10 if n <= 4096 else 4
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps): a @ b
    e.record(); torch.cuda.synchronize()
    ms = s.elapsed_time(e) / reps
    print(json.dumps({"bench": "torch-f32-gemm", "n": n, "ms": ms, "tflops": 2 * n**3 / (ms * 1e-3) / 1e12, "device": torch.cuda.get_device_name()}))
