#!/usr/bin/env bash
# LightningDiT training steps, Kiln (cuda, bf16 autocast) next to PyTorch eager bf16 and torch.compile
# bf16 (bench/torch_baseline.py), same model, batch and card, in one call, with both sides' device
# memory. The compiles run in parallel (CPU); the GPU is held by one process at a time for its timed
# steps (KILN_GPU_LOCK), so no timing overlaps another. Run on the GPU machine from the repository root
# (after `source .device/enter.sh`):
#   bash bench/lightningdit.sh [SECONDS] [specs...]       default: 140 lightningdit:128
# Each part is killed after SECONDS; raw lines and logs go to ${OUT:-/tmp}; prints a table at the end.
# TORCH_COMPILE_SPECS="spec ..." limits torch.compile to those specs (default: all; torch.compile of
# XL/1 takes ~120 s, and it holds the GPU for its first step); TORCH_COMPILE_LIMIT=SECONDS kills the
# torch.compile process earlier than the others, so that when it does not finish in time the other
# sides are still timed. KILN_TUNED_SPECS="spec ..." adds a Kiln
# run with KILN_GEMM_AUTOTUNE=1 (generated GEMM vs cuBLAS measured per matmul signature of the step)
# for those specs; the plain Kiln run (KILN_DEFAULT_SPECS, default all) uses the untuned defaults
# (KILN_GEMM_TUNING=off: library GEMMs, backends/cuda/gemmDefault.ts), what a fresh machine runs without a
# tuning cache. KILN_GENERATED_SPECS="spec ..." adds a run with the generated GEMMs (KILN_GEMM_DEFAULT=generated);
# KILN_VARIANT_SPECS="spec ..." with KILN_VARIANT_ENV="VAR=value ..." a default run with those variables set
# (an experiment next to the default, same call: e.g. KILN_CUDA_ELEMENTWISE_POINTS=4).
# EAGER_SPECS, KILN_DEFAULT_SPECS, TORCH_COMPILE_SPECS = "none": leave that side out (so that one call can
# run several of these scripts side by side, e.g. torch.compile of XL/1 compiling while B/1 is timed, with
# a shared KILN_GPU_LOCK from the environment: no two timed steps overlap); KILN_READY_DIR: the directory
# where each process says it is ready (default a fresh one; GPU_GATE of another invocation can wait on
# it); KILN_GO_ALSO=FILE: touched (and left) when the go is given (a GPU_GATE for another invocation:
# bench/lightningditTable.sh); KILN_TABLE_ONLY=1: run nothing, print the table of what ${OUT} holds for the specs. The Kiln runs
# write every launch of one profiled step to ${OUT}/timeline_<run>.jsonl (bench/trainStep.ts KILN_PROFILE_OUT).
# DIGEST_SPECS="spec ...": the default and variant Kiln runs hash their state after step 1 (KILN_BENCH_DIGEST)
# and the table says whether the variant computed the same bits.
set -uo pipefail
limit=${1:-140}; shift || true
specs=${*:-lightningdit:128}
out=${OUT:-/tmp}
own_lock=0
[ -z "${KILN_GPU_LOCK:-}" ] && { export KILN_GPU_LOCK=/tmp/kiln-gpu-lock-$$; rm -rf "$KILN_GPU_LOCK"; own_lock=1; }
table_only=${KILN_TABLE_ONLY:-}
# Every process compiles (and runs its first step) first, then says it is ready (KILN_GPU_READY) and
# waits for the go (KILN_GPU_AFTER), given once every process still running is ready (and the file
# GPU_GATE exists, when set: another job's GPU work that must end first). So no compile runs beside a
# timed step (a busy CPU slows launch-bound steps), and the timed steps run one at a time (the lock).
go=/tmp/kiln-gpu-go-$$; ready=${KILN_READY_DIR:-/tmp/kiln-gpu-ready-$$}
rm -rf "$go" "$ready"; mkdir -p "$ready"
export KILN_GPU_AFTER=$go
pids=()
start() { local tag=$1; shift; local l=$limit; [[ $tag == compile_* && -n ${TORCH_COMPILE_LIMIT:-} ]] && l=$TORCH_COMPILE_LIMIT; ( KILN_GPU_READY=$ready/$tag timeout "$l" "$@" > "$out/$tag.jsonl" 2> "$out/$tag.log" ) & pids+=($!); }
for s in $specs; do
  [ -n "$table_only" ] && break
  tag=${s//:/_}
  dg=(); [[ " ${DIGEST_SPECS:-} " == *" $s "* ]] && dg=(KILN_BENCH_DIGEST=1)
  [[ " ${KILN_DEFAULT_SPECS:-$specs} " == *" $s "* ]] && start "kiln_$tag" env "${dg[@]}" KILN_BACKEND=cuda KILN_PROFILE=1 KILN_PROFILE_OUT="$out/timeline_kiln_$tag.jsonl" KILN_GEMM_TUNING=off tsx bench/trainStep.ts "$s"
  [[ " ${KILN_TUNED_SPECS:-} " == *" $s "* ]] && start "kilntuned_$tag" env KILN_BACKEND=cuda KILN_PROFILE=1 KILN_GEMM_AUTOTUNE=1 tsx bench/trainStep.ts "$s"
  # shellcheck disable=SC2086
  [[ " ${KILN_VARIANT_SPECS:-} " == *" $s "* ]] && start "kilnvar_$tag" env "${dg[@]}" KILN_BACKEND=cuda KILN_PROFILE=1 KILN_PROFILE_OUT="$out/timeline_kilnvar_$tag.jsonl" KILN_GEMM_TUNING=off ${KILN_VARIANT_ENV:-} tsx bench/trainStep.ts "$s"
  [[ " ${KILN_GENERATED_SPECS:-} " == *" $s "* ]] && start "kilngen_$tag" env KILN_BACKEND=cuda KILN_GEMM_TUNING=off KILN_GEMM_DEFAULT=generated tsx bench/trainStep.ts "$s"
  [[ " ${EAGER_SPECS:-$specs} " == *" $s "* ]] && start "eager_$tag" python3 bench/torch_baseline.py --bf16 "$s"
  [[ " ${TORCH_COMPILE_SPECS:-$specs} " == *" $s "* ]] && start "compile_$tag" python3 bench/torch_baseline.py --bf16 --compile "$s"
done
t0=$(date +%s)
[ -n "$table_only" ] || ( while :; do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    n=$(ls "$ready" | wc -l)
    if [ "$n" -ge "$alive" ] && { [ -z "${GPU_GATE:-}" ] || [ -e "$GPU_GATE" ]; }; then touch "$go" ${KILN_GO_ALSO:+"$KILN_GO_ALSO"}; echo "go after $(( $(date +%s) - t0 )) s ($n ready)" >&2; break; fi
    sleep 0.2
  done ) &
for p in "${pids[@]}"; do wait "$p"; done
[ "$own_lock" = 1 ] && rm -rf "$KILN_GPU_LOCK"
rm -rf "$go"
[ -z "${KILN_READY_DIR:-}" ] && rm -rf "$ready"
node -e '
const fs = require("fs"), out = process.argv[1], specs = process.argv.slice(2);
const read = (f) => { try { return JSON.parse(fs.readFileSync(`${out}/${f}`, "utf8").trim().split("\n").pop()); } catch { return undefined; } };
const ms = (x) => (x ? x.stepMs : "—");
console.log("| program | batch | Kiln bf16 step ms | Kiln autotuned ms | Kiln generated GEMMs ms | eager bf16 ms | torch.compile bf16 ms | Kiln / eager | Kiln / compile | Kiln MiB (planned) | eager peak / reserved MiB | compile peak / reserved MiB | Kiln compile+NVRTC s | torch.compile first step s |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const s of specs) {
  const tag = s.replace(/:/g, "_"), kd = read(`kiln_${tag}.jsonl`), kt = read(`kilntuned_${tag}.jsonl`), kg = read(`kilngen_${tag}.jsonl`), kv = read(`kilnvar_${tag}.jsonl`), k = kt && (!kd || kt.stepMs < kd.stepMs) ? kt : kd, e = read(`eager_${tag}.jsonl`), c = read(`compile_${tag}.jsonl`);
  const r = (a, b) => (a && b ? (a.stepMs / b.stepMs).toFixed(2) + "x" : "—");
  const mem = (x) => (x ? `${x.peakMiB} / ${x.reservedMiB}` : "—");
  console.log(`| ${s.split(":")[0]} ${k?.size ?? ""} | ${s.split(":")[1]} | ${ms(kd)} | ${ms(kt)} | ${ms(kg)} | ${ms(e)} | ${ms(c)} | ${r(k, e)} | ${r(k, c)} | ${k ? `${k.deviceMiB} (${k.plannedMiB})` : "—"} | ${mem(e)} | ${mem(c)} | ${k ? ((k.compileMs + k.nvrtcMs) / 1000).toFixed(1) : "—"} | ${c ? (c.firstStepMs / 1000).toFixed(1) : "—"} |`);
  if (kv) console.log(`  Kiln ${s} variant (${process.env.KILN_VARIANT_ENV}): ${kv.stepMs} ms, loss ${kv.loss} (default: ${kd?.stepMs} ms, loss ${kd?.loss})${kv.digest ? `; state after step 1: ${kv.digest === kd?.digest ? "the same bits" : `DIFFERENT (${kv.digest} vs ${kd?.digest})`}` : ""}`);
  for (const [label, kk] of [["default", kd], ["autotuned", kt], ["variant", kv]]) {
    if (!kk?.profile) continue;
    const p = kk.profile;
    if (kk.autotune) console.log(`  Kiln ${s} autotune: ${kk.autotune.signatures} signatures in ${kk.autotune.ms} ms, kernels by provider ${JSON.stringify(kk.autotune.kernelsBy)}; loss ${kk.loss}`);
    else console.log(`  Kiln ${s} default: loss ${kk.loss}, providers ${JSON.stringify(kk.matmulProviders)}`);
    console.log(`  Kiln ${s} ${label}: GPU timeline ${p.gpuTimelineMs} ms, CPU enqueue ${p.cpuEnqueueMs} ms/step, ${p.launches} launches (${p.launchBound.launches} under 8 us: ${p.launchBound.ms} ms)`);
    for (const [kind, v] of Object.entries(p.byKind)) console.log(`    ${kind}: ${v.ms} ms (${v.share}, ${v.launches} launches)`);
    if (p.byCategory) console.log(`    by category: ${Object.entries(p.byCategory).map(([c, v]) => `${c} ${v.ms} ms (${v.launches})`).join("; ")}`);
    if (p.rowKernelsByMapping) console.log(`    row kernels by mapping: ${Object.entries(p.rowKernelsByMapping).map(([m, v]) => `${m} ${v.ms} ms (${v.launches})`).join(", ")}`);
  }
}
' "$out" $specs
