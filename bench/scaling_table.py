"""The table of bench/scaling.sh: per model and GPU count, Kiln's and PyTorch DDP's samples/s, per-GPU
samples/s, scaling efficiency (throughput(N) / (N * throughput(1))), and Kiln / DDP per GPU.
At one GPU also Kiln's data-parallel step vs its plain step, and DDP vs no DDP.

  python3 bench/scaling_table.py OUT_DIR
"""
import glob
import json
import os
import re
import sys

out = sys.argv[1]


def lines(path):
    try:
        return [json.loads(l) for l in open(path) if l.startswith("{")]
    except FileNotFoundError:
        return []


rows = {}
for path in glob.glob(os.path.join(out, "kiln_*.jsonl")):
    m = re.search(r"kiln_(\d+)\.jsonl$", path)
    if not m:
        continue
    for r in lines(path):
        model = "XL/1" if "XL" in r["program"] else "B/1"
        rows.setdefault((model, int(m.group(1))), {})["kiln"] = r
for path in glob.glob(os.path.join(out, "torch_*.jsonl")):
    n = int(re.search(r"torch_(\d+)\.jsonl$", path).group(1))
    for r in lines(path):
        model = "XL/1" if r["program"].endswith("_xl") else "B/1"
        rows.setdefault((model, n), {})["torch"] = r

print("| model | GPUs | global batch | Kiln samples/s | Kiln per GPU | Kiln efficiency | DDP samples/s | DDP per GPU | DDP efficiency | Kiln / DDP per GPU |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for (model, n) in sorted(rows):
    k, t = rows[(model, n)].get("kiln"), rows[(model, n)].get("torch")
    k1 = rows.get((model, 1), {}).get("kiln")
    t1 = rows.get((model, 1), {}).get("torch")
    ks = k and k["samplesPerS"]
    ts = t and t["samplesPerS"]
    f = lambda v: "-" if v is None else f"{v:.1f}"
    keff = ks / (n * k1["samplesPerS"]) if k and k1 else None
    teff = ts / (n * t1["samplesPerS"]) if t and t1 else None
    gb = (k or t or {}).get("globalBatch")
    print(f"| {model} | {n} | {gb} | {f(ks)} | {f(ks and ks / n)} | {'-' if keff is None else f'{keff:.1%}'} | {f(ts)} | {f(ts and ts / n)} | {'-' if teff is None else f'{teff:.1%}'} | {'-' if not (ks and ts) else f'{ks / ts:.2f}'} |")
for (model, n) in sorted(rows):
    if n != 1:
        continue
    k, t = rows[(model, n)].get("kiln"), rows[(model, n)].get("torch")
    if k and "plainStepMs" in k:
        print(f"{model} 1 GPU, Kiln: plain step {k['plainStepMs']} ms, data-parallel step {k['dpStepMs']} ms ({k['dpOverheadPct']:+.1f}%), first losses agree: {k.get('lossesAgree')}")
    if t and "noDdpStepMs" in t:
        print(f"{model} 1 GPU, PyTorch: no DDP {t['noDdpStepMs']} ms, DDP {t['ddpStepMs']} ms ({(t['ddpStepMs'] / t['noDdpStepMs'] - 1) * 100:+.1f}%)")
