"""Reads the output of bench/fae_chain_gpu.sh: `plan RUNS` prints the step counts the Kiln runs reached (the
PyTorch side's --plan); `table OUT` prints the Kiln vs PyTorch table (markdown) and writes OUT/summary.json.

Final loss = the mean of the last 10 logged training losses (both sides). Kiln train seconds = the sum of the
logged step times (data wait and compile excluded); Kiln wall = the whole `kiln train` process (start-up,
compile, training, checkpoint, evaluation); PyTorch train seconds = the timed training loop.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

STAGES = ["classifier", "fae-stage-ia", "fae-stage-ib", "fae-pixel-finetune", "lightningdit-fae", "tarflow-fae"]
KILN_ONLY = ["ssl-encoder", "lightningdit-pixels"]


def metrics(run: Path):
    f = run / "metrics.jsonl"
    if not f.exists():
        return []
    out = []
    for line in f.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def plan(runs: Path):
    p = {}
    for s in STAGES:
        m = metrics(runs / s)
        if not m:
            continue
        cfg = json.loads((runs / s / "config.json").read_text())
        p[s] = {"steps": int(m[-1]["step"]), "total": int(cfg.get("steps") or m[-1]["step"])}
    return p


def last_json(log: Path):
    if not log.exists():
        return None
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def fmt(v, d=4):
    return "n/a" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))


def ratio(a, b):
    return "" if a is None or b is None or b == 0 else f"{a / b:.3f}"


def within(a, b, tol=0.10):
    """Issue 13 item 4's test: |Kiln − PyTorch| ≤ 10% of |PyTorch| (also for negative losses: TarFlow's NLL)."""
    return "" if a is None or b is None or b == 0 else ("yes" if abs(a - b) <= tol * abs(b) else "**no**")


def table(out: Path):
    runs, logs = out / "runs", out / "logs"
    times = {}
    if (out / "times.txt").exists():
        for line in (out / "times.txt").read_text().splitlines():
            n, rc, ms = line.split()
            times[n] = (int(rc), int(ms) / 1000)
    tm = {}
    if (out / "torch" / "torch_metrics.json").exists():
        tm = json.loads((out / "torch" / "torch_metrics.json").read_text())
    ts = tm.get("stages", {})
    kiln = {}
    rows = ["| stage | steps Kiln / PyTorch | final loss (last 10 steps) Kiln | PyTorch | Kiln/PyTorch | within 10% | last 100 steps Kiln | PyTorch | within 10% | Kiln ms/step (median) | PyTorch ms/step (mean) | Kiln train s (steps) | Kiln wall s (process) | PyTorch train s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in STAGES + KILN_ONLY:
        m = metrics(runs / s)
        k = {}
        if m:
            ls = [r["loss"] for r in m[-10:]]
            ms = sorted(r.get("step_ms", 0) for r in m)
            l100 = [r["loss"] for r in m[-100:]]
            k = {"steps": m[-1]["step"], "loss": sum(ls) / len(ls), "loss_last100": sum(l100) / len(l100), "train_s": sum(ms) / 1000, "median_ms": ms[(len(ms) - 1) // 2]}
        k["wall_s"] = times.get(s, (None, None))[1]
        k["rc"] = times.get(s, (None, None))[0]
        kiln[s] = k
        t = ts.get(s, {})
        tms = 1000 * t["train_s"] / t["steps"] if t.get("steps") else None
        rows.append(f"| {s} | {k.get('steps', 'n/a')} / {t.get('steps', '-')} | {fmt(k.get('loss'))} | {fmt(t.get('loss'))} | {ratio(k.get('loss'), t.get('loss'))} | {within(k.get('loss'), t.get('loss'))} | "
                    f"{fmt(k.get('loss_last100'))} | {fmt(t.get('loss_last100'))} | {within(k.get('loss_last100'), t.get('loss_last100'))} | "
                    f"{fmt(k.get('median_ms'), 2)} | {fmt(tms, 2)} | {fmt(k.get('train_s'), 2)} | {fmt(k.get('wall_s'), 1)} (rc {k['rc']}) | {fmt(t.get('train_s'), 2)} |")
    clf_log = logs / "classifier.log"
    acc = None
    if clf_log.exists():
        mm = re.findall(r"test_accuracy ([\d.]+)", clf_log.read_text())
        acc = float(mm[-1]) if mm else None
    ev = {n: last_json(logs / f"{n}.log") for n in ["eval-fae", "acc-real", "fd-dit-cfg", "fd-dit", "fd-tarflow-cfg", "fd-tarflow",
                                                      "acc-dit-cfg", "acc-dit", "acc-tarflow-cfg", "acc-tarflow", "fd-dit-f32"]}
    fae, tfae = ev["eval-fae"] or {}, tm.get("fae", {})
    rows += ["", "| metric | Kiln | PyTorch | Kiln/PyTorch | within 10% |", "| --- | --- | --- | --- | --- |"]

    def row(name, a, b, d=4):
        rows.append(f"| {name} | {fmt(a, d)} | {fmt(b, d)} | {ratio(a, b)} | {within(a, b)} |")

    row("classifier test accuracy (real test images)", acc, ts.get("classifier", {}).get("test_accuracy"))
    row("FAE reconstruction PSNR (dB)", fae.get("psnr"), tfae.get("psnr"), 2)
    row("FAE reconstruction SSIM", fae.get("ssim"), tfae.get("ssim"))
    row("linear probe, raw features", fae.get("probe_raw"), tfae.get("probe_raw"))
    row("linear probe, reconstructed features", fae.get("probe_reconstructed"), tfae.get("probe_reconstructed"))
    fl = (ev["fd-dit-cfg"] or ev["fd-dit"] or {}).get("floor")
    row("FD real-vs-real floor", fl, tm.get("fd_floor"), 3)
    if tm.get("fd_reconstructions") is not None:
        rows.append(f"| FD of FAE reconstructions (test[N:2N] vs test[0:N]: the decoders' own cost) | n/a | {fmt(tm['fd_reconstructions'], 3)} | | |")
    tdit, ttf = ts.get("lightningdit-fae", {}), ts.get("tarflow-fae", {})
    for label, kf, ka, tt in [("LightningDiT, CFG 2.5 on [0.3, 1]", "fd-dit-cfg", "acc-dit-cfg", tdit.get("cfg")),
                              ("LightningDiT, no guidance", "fd-dit", "acc-dit", tdit.get("none")),
                              ("TarFlow, guidance 1", "fd-tarflow-cfg", "acc-tarflow-cfg", ttf.get("guided")),
                              ("TarFlow, no guidance", "fd-tarflow", "acc-tarflow", ttf.get("none"))]:
        row(f"FD {label}", (ev[kf] or {}).get("fd"), (tt or {}).get("fd"), 3)
        row(f"classifier accuracy on samples, {label}", (ev[ka] or {}).get("accuracy"), (tt or {}).get("accuracy"))
    def wall(*names):  # Kiln: the processes' wall seconds (each a separate process, start-up and compile included)
        v = [times[n][1] for n in names if n in times]
        return sum(v) if v else None

    rows += ["", "| sampling and evaluation (wall s) | Kiln (sum of its processes) | PyTorch (in process) |", "| --- | --- | --- |",
             f"| LightningDiT: 2 x N samples (CFG, none) + FD + accuracy | {fmt(wall('sample-dit-cfg', 'sample-dit', 'fd-dit-cfg', 'fd-dit', 'acc-dit-cfg', 'acc-dit'), 1)} | {fmt(tdit.get('sample_s'), 1)} |",
             f"| TarFlow: 2 x N samples (guided, none) + FD + accuracy | {fmt(wall('sample-tarflow-cfg', 'sample-tarflow', 'fd-tarflow-cfg', 'fd-tarflow', 'acc-tarflow-cfg', 'acc-tarflow'), 1)} | {fmt(ttf.get('sample_s'), 1)} |",
             f"| FAE: PSNR/SSIM + probes of raw and reconstructed features | {fmt(wall('eval-fae'), 1)} | {fmt(tfae.get('seconds'), 1)} |"]
    if ev["fd-dit-f32"]:
        rows.append(f"\nKiln's no-guidance LightningDiT samples drawn again in f32 (`KILN_PRECISION=f32`): FD {ev['fd-dit-f32']['fd']:.3f} (bf16: {fmt((ev['fd-dit'] or {}).get('fd'), 3)}).")
    summary = {"kiln": {"stages": kiln, "classifier_accuracy": acc, "evals": ev, "times": times}, "torch": tm}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    if sys.argv[1] == "plan":
        print(json.dumps(plan(Path(sys.argv[2]))))
    else:
        table(Path(sys.argv[2]))
