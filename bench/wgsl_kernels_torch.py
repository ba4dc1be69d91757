"""PyTorch baselines for bench/wgslKernels.ts on the same card: attention forward and forward + backward
at the shapes given as B,H,S,D[,causal] (argv), bf16, SDPA and eager (softmax(q·kᵀ·scale)·v, the N×N
matrix materialized); `norm:ROWSxWIDTH` LayerNorm and RMSNorm (no affine) forward and forward + backward,
bf16 and f32. CUDA events, median of 10 after 3 warm-ups; forward + backward = one forward and
torch.autograd.grad of Σ y·cot. One JSON line each. KILN_GPU_LOCK=DIR: each measurement holds the GPU
(an atomic mkdir of DIR, as bench/torch_baseline.py and bench/wgslKernels.ts do)."""
import json, os, sys, time
import torch
import torch.nn.functional as F

def med(fn, n=10):
    lock = os.environ.get('KILN_GPU_LOCK')
    while lock:
        try:
            os.mkdir(lock); break
        except FileExistsError:
            time.sleep(0.02)
    try:
        return _med(fn, n)
    finally:
        if lock: os.rmdir(lock)

def _med(fn, n):
    for _ in range(3): fn()
    ts = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
    ts.sort(); return ts[len(ts) // 2]

def eager(q, k, v, causal):
    s = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if causal:
        n = s.shape[-1]; s = s.masked_fill(torch.ones(n, n, device=s.device, dtype=torch.bool).triu(1), float('-inf'))
    return torch.softmax(s.float(), -1).to(q.dtype) @ v

def norm(spec):
    R, W = map(int, spec.split(':')[1].split('x'))
    for dt, dn in [(torch.bfloat16, 'bf16'), (torch.float32, 'f32')]:
        x = torch.randn(R, W, device='cuda', dtype=dt, requires_grad=True)
        cot = torch.randn(R, W, device='cuda', dtype=dt)
        for name, f in [('layer_norm', lambda: F.layer_norm(x, (W,))), ('rms_norm', lambda: F.rms_norm(x, (W,)))]:
            fwd = med(f)
            tot = med(lambda: torch.autograd.grad(f(), (x,), cot))
            gbs = 2 * R * W * x.element_size() / (fwd * 1e-3) / 1e9
            print(json.dumps({'bench': 'torch', 'part': 'norm', 'shape': f'{name} {R}x{W}', 'variant': f'torch-eager-{dn}', 'fwdMs': round(fwd, 4), 'totalMs': round(tot, 4), 'fwdGBs': round(gbs)}), flush=True)

for spec in sys.argv[1:]:
    if spec.startswith('norm:'):
        norm(spec); continue
    p = spec.split(','); B, H, S, D = map(int, p[:4]); causal = len(p) > 4 and p[4] == 'causal'
    q, k, v = (torch.randn(B, H, S, D, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    do = torch.randn(B, H, S, D, device='cuda', dtype=torch.bfloat16)
    flop = 4 * B * H * S * S * D * (0.5 if causal else 1)
    for name, f in [('sdpa', lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)), ('eager', lambda: eager(q, k, v, causal))]:
        try:
            fwd = med(f)
            tot = med(lambda: torch.autograd.grad(f(), (q, k, v), do))
            print(json.dumps({'bench': 'torch', 'part': 'attn', 'shape': spec, 'variant': f'torch-{name}-bf16', 'fwdMs': round(fwd, 3), 'totalMs': round(tot, 3),
                              'fwdTflops': round(flop / (fwd * 1e-3) / 1e12, 1), 'totalTflops': round(3.5 * flop / (tot * 1e-3) / 1e12, 1), 'device': torch.cuda.get_device_name()}), flush=True)
        except Exception as e:
            print(json.dumps({'bench': 'torch', 'part': 'attn', 'shape': spec, 'variant': f'torch-{name}-bf16', 'error': str(e)[:200]}), flush=True)
        torch.cuda.empty_cache()
