"""PyTorch SDPA (bf16) forward + backward at the shapes given as B,H,S,D[,causal]; one JSON line each.
Timed with CUDA events: median of 20 iterations after 5 warm-ups; forward and backward timed separately
(the backward from a retained graph). FLOPs as in bench/attention.ts (forward 4·b·h·s²·d, backward 2.5×,
halved when causal). SDPA_NO_PROFILE=1 skips the profiler (short GPU windows). `kernels`: the CUDA kernels one forward + backward launches (torch.profiler), which
say which SDPA backend PyTorch picked (FlashAttention-2, cuDNN, memory-efficient)."""
import json, os, sys
import torch
import torch.nn.functional as F

def med(fn, n=20):
    for _ in range(5): fn()
    ts = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
    ts.sort(); return ts[len(ts) // 2]

for spec in sys.argv[1:]:
    p = spec.split(','); B, H, S, D = map(int, p[:4]); causal = len(p) > 4 and p[4] == 'causal'
    q, k, v = (torch.randn(B, H, S, D, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    do = torch.randn(B, H, S, D, device='cuda', dtype=torch.bfloat16)
    fwd = med(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    bwd = med(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))
    try:
        if os.environ.get('SDPA_NO_PROFILE'): raise RuntimeError('skipped (SDPA_NO_PROFILE)')
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            o2 = F.scaled_dot_product_attention(q, k, v, is_causal=causal); torch.autograd.grad(o2, (q, k, v), do); torch.cuda.synchronize()
        kernels = sorted({e.key[:90] for e in prof.key_averages() if e.device_type.name == 'CUDA'})
    except Exception as e:  # the profiler is a side note: never lose the timing for it
        kernels = [f'profiler failed: {e}']
    flop = 4 * B * H * S * S * D * (0.5 if causal else 1)
    tf = lambda f, ms: round(f / (ms * 1e-3) / 1e12, 1)
    print(json.dumps({'shape': spec, 'fwdMs': round(fwd, 3), 'bwdMs': round(bwd, 3), 'totalMs': round(fwd + bwd, 3),
                      'fwdTflops': tf(flop, fwd), 'bwdTflops': tf(2.5 * flop, bwd), 'totalTflops': tf(3.5 * flop, fwd + bwd),
                      'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'kernels': kernels}), flush=True)
