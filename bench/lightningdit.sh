#!/usr/bin/env bash
# LightningDiT training steps, Kiln (cuda, bf16 autocast) next to PyTorch eager bf16 and torch.compile
# bf16 (bench/torch_baseline.py), same model, batch and card, in one call, with both sides' device
# memory. The compiles run in parallel (CPU); the GPU is held by one process at a time for its timed
# steps (KILN_GPU_LOCK), so no timing overlaps another. Run on the GPU machine from the repository root
# (after `source .device/enter.sh`):
#   bash bench/lightningdit.sh [SECONDS] [specs...]       default: 140 lightningdit:128
# Each part is killed after SECONDS; raw lines and logs go to ${OUT:-/tmp}; prints a table at the end.
# TORCH_COMPILE_SPECS="spec ..." limits torch.compile to those specs (default: all; torch.compile of
# XL/1 takes ~120 s, and it holds the GPU for its first step). KILN_TUNED_SPECS="spec ..." adds a Kiln
# run with KILN_GEMM_AUTOTUNE=1 (generated GEMM vs cuBLAS measured per matmul signature of the step)
# for those specs; the plain Kiln run (KILN_DEFAULT_SPECS, default all) uses the tiling stage's
# default schedules (KILN_GEMM_TUNING=off), what a fresh machine runs without a tuning cache.
set -uo pipefail
limit=${1:-140}; shift || true
specs=${*:-lightningdit:128}
out=${OUT:-/tmp}
export KILN_GPU_LOCK=/tmp/kiln-gpu-lock-$$
rm -rf "$KILN_GPU_LOCK"
# The eager runs hold the GPU first (they are quick and take the most memory); everything else takes
# its turn after they have exited (KILN_GPU_AFTER), so that their memory is free by then.
after=/tmp/kiln-gpu-eager-done-$$
export KILN_GPU_AFTER=$after
rm -f "$KILN_GPU_AFTER" "$KILN_GPU_AFTER".*
eager=()
for s in $specs; do
  tag=${s//:/_}
  ( unset KILN_GPU_AFTER; timeout "$limit" python3 bench/torch_baseline.py --bf16 "$s" > "$out/eager_$tag.jsonl" 2> "$out/eager_$tag.log"; touch "$after.$tag" ) &
  eager+=($!)
done
( n=${#eager[@]}; while [ "$(ls "$KILN_GPU_AFTER".* 2>/dev/null | wc -l)" -lt "$n" ]; do sleep 0.1; done; touch "$KILN_GPU_AFTER" ) &
pids=("${eager[@]}" $!)
for s in $specs; do
  tag=${s//:/_}
  if [[ " ${KILN_DEFAULT_SPECS:-$specs} " == *" $s "* ]]; then
    ( KILN_BACKEND=cuda KILN_PROFILE=1 KILN_GEMM_TUNING=off timeout "$limit" tsx bench/trainStep.ts "$s" > "$out/kiln_$tag.jsonl" 2> "$out/kiln_$tag.log" ) &
    pids+=($!)
  fi
  if [[ " ${KILN_TUNED_SPECS:-} " == *" $s "* ]]; then
    ( KILN_BACKEND=cuda KILN_PROFILE=1 KILN_GEMM_AUTOTUNE=1 timeout "$limit" tsx bench/trainStep.ts "$s" > "$out/kilntuned_$tag.jsonl" 2> "$out/kilntuned_$tag.log" ) &
    pids+=($!)
  fi
  if [[ " ${TORCH_COMPILE_SPECS:-$specs} " == *" $s "* ]]; then
    ( timeout "$limit" python3 bench/torch_baseline.py --bf16 --compile "$s" > "$out/compile_$tag.jsonl" 2> "$out/compile_$tag.log" ) &
    pids+=($!)
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
rm -rf "$KILN_GPU_LOCK" "$KILN_GPU_AFTER" "$KILN_GPU_AFTER".*
node -e '
const fs = require("fs"), out = process.argv[1], specs = process.argv.slice(2);
const read = (f) => { try { return JSON.parse(fs.readFileSync(`${out}/${f}`, "utf8").trim().split("\n").pop()); } catch { return undefined; } };
const ms = (x) => (x ? x.stepMs : "—");
console.log("| program | batch | Kiln bf16 step ms | Kiln autotuned ms | eager bf16 ms | torch.compile bf16 ms | Kiln / eager | Kiln / compile | Kiln MiB (planned) | eager peak / reserved MiB | compile peak / reserved MiB | Kiln compile+NVRTC s | torch.compile first step s |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const s of specs) {
  const tag = s.replace(/:/g, "_"), kd = read(`kiln_${tag}.jsonl`), kt = read(`kilntuned_${tag}.jsonl`), k = kt && (!kd || kt.stepMs < kd.stepMs) ? kt : kd, e = read(`eager_${tag}.jsonl`), c = read(`compile_${tag}.jsonl`);
  const r = (a, b) => (a && b ? (a.stepMs / b.stepMs).toFixed(2) + "x" : "—");
  const mem = (x) => (x ? `${x.peakMiB} / ${x.reservedMiB}` : "—");
  console.log(`| ${s.split(":")[0]} ${k?.size ?? ""} | ${s.split(":")[1]} | ${ms(kd)} | ${ms(kt)} | ${ms(e)} | ${ms(c)} | ${r(k, e)} | ${r(k, c)} | ${k ? `${k.deviceMiB} (${k.plannedMiB})` : "—"} | ${mem(e)} | ${mem(c)} | ${k ? ((k.compileMs + k.nvrtcMs) / 1000).toFixed(1) : "—"} | ${c ? (c.firstStepMs / 1000).toFixed(1) : "—"} |`);
  for (const [label, kk] of [["default", kd], ["autotuned", kt]]) {
    if (!kk?.profile) continue;
    const p = kk.profile;
    if (kk.autotune) console.log(`  Kiln ${s} autotune: ${kk.autotune.signatures} signatures in ${kk.autotune.ms} ms, kernels by provider ${JSON.stringify(kk.autotune.kernelsBy)}; loss ${kk.loss}`);
    else console.log(`  Kiln ${s} default: loss ${kk.loss}, providers ${JSON.stringify(kk.matmulProviders)}`);
    console.log(`  Kiln ${s} ${label}: GPU timeline ${p.gpuTimelineMs} ms, CPU enqueue ${p.cpuEnqueueMs} ms/step, ${p.launches} launches (${p.launchBound.launches} under 8 us: ${p.launchBound.ms} ms)`);
    for (const [kind, v] of Object.entries(p.byKind)) console.log(`    ${kind}: ${v.ms} ms (${v.share}, ${v.launches} launches)`);
  }
}
' "$out" $specs
