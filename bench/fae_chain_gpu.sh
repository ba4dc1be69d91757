#!/usr/bin/env bash
# @file The FAE chain on the GPU machine, Kiln and PyTorch with the same step counts (issue 13 items 2, 3, 4).
#
#   OUT=<dir> [ENC=<ssl-encoder run>] [S_*=steps] [LIM_*=seconds] [CURVES=1 EVERY=K] [END=<unix s>] bash bench/fae_chain_gpu.sh
#   OUT=<dir> bash bench/fae_chain_gpu.sh collect     # only the last part: metrics back, table (after a kill)
#
# Every stage has a fixed step count (S_CLF, S_SSL, S_IA, S_IB, S_FT, S_DIT, S_TF; the cosine schedules are those
# lengths) and a time limit as a safety net (LIM_*: `kiln train --time-limit`, plus `timeout -k`); END (a Unix time,
# a GPU window's end) caps every limit, so what runs past it stops and what ran comes back. The PyTorch side
# (bench/fae_pipeline_torch.py) gets the same counts (plan.json, written up front), starts at once (its classifier),
# waits for the SSL encoder, then runs beside Kiln's stages (both contend for the one GPU's SMs: per-stage times
# are under load).
# Kiln (cuda, $PREC: default the backend's, bf16): without ENC, `kiln train ssl-encoder` (the shipped recipe, probe
# off) beside fashion-classifier (and lightningdit-pixels with CURVES=1); then fae-stage-ia; then (fae-stage-ib →
# fae-pixel-finetune) ‖ lightningdit-fae ‖ tarflow-fae. Then samples (LightningDiT with and without interval CFG,
# TarFlow guided and not), FD in the SSL encoder's space (N = $COUNT, real-vs-real floor), classifier accuracy on
# the samples, `kiln eval fae` (PSNR/SSIM, probe of reconstructed vs raw features).
# CURVES=1 (issue 13 item 3): lightningdit-pixels (the same DiT on the images, patch 4) and lightningdit-fae both
# checkpoint every $EVERY steps; from every checkpoint $CURVE_COUNT samples (Euler, $CURVE_STEPS grid points, no
# guidance) and their FD (N = $CURVE_COUNT, with its floor): $OUT/curves.tsv. The pixel-space curve runs as soon
# as its DiT and the encoder exist (beside the FAE stages), the FAE one after the fine-tuned decoder.
# Runs (with checkpoints) live under $RUNS (default /tmp/fae-chain-runs); $OUT gets logs, metrics.jsonl/config.json
# of every run, the PNGs, the tables, and the SSL encoder's weights (model + ema, ~3 MB) when it was trained here.
set -u
OUT=${OUT:-out/fae-chain}
RUNS=${RUNS:-/tmp/fae-chain-runs}
R=$RUNS L=$OUT/logs S=$OUT/samples
COUNT=${COUNT:-1000} CURVE_COUNT=${CURVE_COUNT:-500}

# collect: every run's metrics and config back under $OUT, the encoder's checkpoint when trained here, the table
collect() {
  local d n c
  for d in "$R"/*/; do
    [ -d "$d" ] || continue
    n=$(basename "$d"); mkdir -p "$OUT/runs/$n"
    cp "$d"/config.json "$d"/metrics.jsonl "$d"/loss.png "$OUT/runs/$n/" 2>/dev/null
  done
  # the last checkpoints of the encoder (model + EMA, 3 MB), stage Ia and the fine-tuned pixel decoder (weights only,
  # 0.6 + 2.2 MB): a later window takes them as step directories (ENC=.../step-N; a run directory needs train_state)
  for n in ssl-encoder fae-stage-ia fae-pixel-finetune; do
    c=$(ls -d "$R/$n"/checkpoints/step-* 2>/dev/null | tail -1)
    [ -n "$c" ] || continue
    mkdir -p "$OUT/runs/$n/checkpoints/$(basename "$c")"
    cp "$c"/model.safetensors "$c"/manifest.json "$OUT/runs/$n/checkpoints/$(basename "$c")/"
    [ "$n" = ssl-encoder ] && cp "$c"/ema.safetensors "$OUT/runs/$n/checkpoints/$(basename "$c")/"
  done
  rm -f "$S"/*.safetensors
  find "$OUT" -name '*.pt' -delete # the PyTorch side's hand-over files (weights, ~100 MB with the curve's snapshots) when it was cut
  printf 'space\tstep\tfd\tfloor\n' > "$OUT/curves.tsv"
  for f in "$L"/curve-fd-*.log; do
    [ -f "$f" ] || continue
    b=$(basename "$f" .log); b=${b#curve-fd-}; space=${b%%-*}; step=$((10#${b##*step-}))
    python3 -c "import json,sys; l=[x for x in open(sys.argv[1]) if x.startswith('{')]; d=json.loads(l[-1]) if l else {}; print(f\"$space\t$step\t{d.get('fd','nan')}\t{d.get('floor','nan')}\")" "$f" >> "$OUT/curves.tsv"
  done
  [ -f "$OUT/torch/torch_metrics.json" ] && python3 -c "import json,sys; c=json.load(open(sys.argv[1])).get('curve'); [print(f\"torch-fae\t{q['step']}\t{q['fd']}\t{c['floor']}\") for q in (c or {}).get('points', [])]" "$OUT/torch/torch_metrics.json" >> "$OUT/curves.tsv"
  tail -n +2 "$OUT/curves.tsv" | sort -k1,1 -k2,2n
  for space in fae pixels; do # of the curve grids, only the last checkpoint's comes back (size)
    ls "$S"/curve-$space-step-*.png 2>/dev/null | sort | head -n -1 | xargs -r rm -f
  done
  python3 bench/fae_chain_table.py table "$OUT" | tee "$OUT/table.md"
  # the small PNGs for docs/ (bench/faeChainDocs.ts: 2 rows of each grid, the curve plot); then the 1000-sample
  # grids (~1 MB each) stay behind
  if timeout 30 tsx bench/faeChainDocs.ts "$OUT" "$OUT/img" gpu --samples "$COUNT" --curve-samples "$CURVE_COUNT" --md "$OUT/section.md" > "$L/docs.log" 2>&1; then
    find "$S" -name '*.png' ! -name reconstructions.png -delete
  fi
  du -sh "$OUT"
}
if [ "${1:-}" = collect ]; then collect; exit 0; fi

rm -rf "$R"
mkdir -p "$R" "$L" "$S"
BK=${BACKEND:-cuda}
KB=(--backend "$BK")
[ -n "${PREC:-}" ] && KB+=(--precision "$PREC")
EXTRA=()
[ -n "${BATCH:-}" ] && EXTRA=(--batch "$BATCH") # smoke runs only
TPREC=${PREC:-bf16}
# defaults: about 4 minutes on an H200, PyTorch included (docs/RESULTS.md section 2)
: "${S_CLF:=6000}" "${S_SSL:=5000}" "${S_IA:=2000}" "${S_IB:=1200}" "${S_FT:=600}" "${S_DIT:=4000}" "${S_TF:=2500}"
: "${LIM_CLF:=40}" "${LIM_SSL:=75}" "${LIM_IA:=50}" "${LIM_IB:=30}" "${LIM_FT:=15}" "${LIM_DIT:=90}" "${LIM_TF:=70}" "${LIM_EVAL:=30}"
: "${TORCH_LIMIT:=600}" "${EVERY:=800}" "${CURVE_COUNT:=500}" "${CURVE_STEPS:=25}" "${PAR:=4}" "${END:=0}"
T0=$(date +%s%N)
el() { echo $(( ($(date +%s%N) - T0) / 1000000000 )); }
left() { [ "$END" -gt 0 ] && echo $(( END - $(date +%s) )) || echo 100000; } # seconds to END
SEQ=${SEQ:-0} # SEQ=1: Kiln's training stages one after another, then the PyTorch side alone (per-stage times without load)
bg() { if [ "$SEQ" = 1 ]; then "$@"; else "$@" & fi; }
cap() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); } # min(LIMIT, seconds to END)

# k NAME LIMIT ARGS...: one kiln command, its log, its wall time (times.txt: name rc seconds)
k() {
  local name=$1 lim t0
  lim=$(cap "$2")
  shift 2
  t0=$(date +%s%N)
  timeout -k 2 "$lim" node cli/bin.mjs "$@" > "$L/$name.log" 2>&1
  local rc=$?
  echo "$name $rc $(( ($(date +%s%N) - t0) / 1000000 ))" >> "$OUT/times.txt"
  echo "[$(el)s] $name rc=$rc $(grep -o 'step_ms":[0-9.]*' "$R/$name/metrics.jsonl" 2>/dev/null | cut -d: -f2 | sort -n | awk '{a[NR]=$1} END {if (NR) printf "steps=%d median_step_ms=%.2f", NR, a[int((NR+1)/2)]}')"
  return $rc
}
tr_() { # NAME JOB STEPS LIMIT ARGS...: kiln train (--time-limit: min(LIMIT, seconds to END less 25 for the evaluations))
  local name=$1 job=$2 steps=$3 lim=$4 l
  shift 4
  l=$(( $(left) - 25 )); [ "$l" -lt "$lim" ] && lim=$(( l > 5 ? l : 5 ))
  k "$name" $((lim + 25)) train "$job" "${KB[@]}" --steps "$steps" --time-limit "$lim" --set keepCheckpoints=1 "${EXTRA[@]}" "$@" --out "$R/$name"
}
ck=$((1000000))
curve=()
[ "${CURVES:-0}" = 1 ] && curve=(--set "intervals.checkpoint=$EVERY" --set keepCheckpoints=1000)

# curves SPACE PAR [--fae DEC]: item 3, FD of every checkpoint of lightningdit-SPACE, PAR sample+FD pairs at a time
curves() {
  local space=$1 par=$2 ckd n pids=()
  shift 2
  for ckd in "$R/lightningdit-$space"/checkpoints/step-*; do
    [ -d "$ckd" ] || continue
    n=$(basename "$ckd")
    ( k "curve-sample-$space-$n" "$LIM_EVAL" sample "$ckd" --backend "$BK" --weights model "$@" --num "$CURVE_COUNT" --steps "$CURVE_STEPS" --columns 20 --out "$S/curve-$space-$n.png" --save-samples "$S/curve-$space-$n.safetensors" &&
      k "curve-fd-$space-$n" "$LIM_EVAL" eval fd --backend "$BK" --real fashion-mnist:test --fake "$S/curve-$space-$n.safetensors" --ssl-encoder "$ENC" --count "$CURVE_COUNT" --batch 500 --json
      rm -f "$S/curve-$space-$n.safetensors" ) &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$par" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  done
  for p in "${pids[@]}"; do wait "$p"; done
  echo "[$(el)s] curve $space done"
}

# the plan both sides train (the PyTorch side's --plan)
printf '{"classifier":{"steps":%d},"fae-stage-ia":{"steps":%d},"fae-stage-ib":{"steps":%d},"fae-pixel-finetune":{"steps":%d},"lightningdit-fae":{"steps":%d},"tarflow-fae":{"steps":%d}}\n' \
  "$S_CLF" "$S_IA" "$S_IB" "$S_FT" "$S_DIT" "$S_TF" > "$OUT/plan.json"

READY=$OUT/encoder.ready
rm -f "$READY"
[ -n "${ENC:-}" ] && touch "$READY"
ENC=${ENC:-$R/ssl-encoder}
run_torch() {
  local lim t0
  lim=$(cap "$TORCH_LIMIT")
  t0=$(date +%s%N)
  timeout -k 2 "$lim" python3 bench/fae_pipeline_torch.py --encoder "$ENC" --encoder-ready "$READY" --plan "$OUT/plan.json" --out "$OUT/torch" --count "$COUNT" \
    --precision "$TPREC" --probe-train 10000 $([ "$SEQ" = 1 ] || echo --parallel-generators) $([ "${CURVES:-0}" = 1 ] && echo --curve-every "$EVERY" --curve-count "$CURVE_COUNT" --curve-steps "$CURVE_STEPS") --deadline "$END" --reserve 25 ${TORCH_ARGS:-} > "$L/torch.log" 2>&1
  echo "torch $? $(( ($(date +%s%N) - t0) / 1000000 ))" >> "$OUT/times.txt"
  echo "[$(el)s] torch done: $(grep -c . "$OUT/torch/torch_log.txt" 2>/dev/null) log lines"
}
TORCH_PID=
if [ "${TORCH:-1}" = 1 ] && [ "$SEQ" != 1 ]; then run_torch & TORCH_PID=$!; fi
waitk() { local p; for p in $(jobs -p); do [ "$p" = "$TORCH_PID" ] || [ "$p" = "${PIX_PID:-}" ] || wait "$p"; done; } # Kiln's stage jobs

bg tr_ classifier fashion-classifier "$S_CLF" "$LIM_CLF" --set intervals.checkpoint=$ck
PIX_PID=
if [ "${CURVES:-0}" = 1 ] && [ "${PIXELS:-1}" = 1 ]; then # the pixel-space DiT (PIXELS=0: not in this run), then (once the encoder exists) its curve, in the background
  ( tr_ lightningdit-pixels lightningdit-pixels "$S_DIT" "$LIM_DIT" "${curve[@]}"
    while [ ! -f "$READY" ] && [ "$(left)" -gt 0 ]; do sleep 1; done
    curves pixels 2 ) &
  PIX_PID=$!
fi
if [ ! -f "$READY" ]; then
  tr_ ssl-encoder ssl-encoder "$S_SSL" "$LIM_SSL" --set model.probe=null --set intervals.checkpoint=$ck && touch "$READY"
fi
[ -d "$ENC" ] && [ -f "$READY" ] || { echo "no SSL encoder at $ENC"; collect; exit 1; }

enc=(--set "model.encoder.checkpoint=$ENC")
tr_ fae-stage-ia fae-stage-ia "$S_IA" "$LIM_IA" "${enc[@]}" --set intervals.checkpoint=$ck
lat=(--set "model.latents.encoder.checkpoint=$ENC" --set "model.latents.checkpoint=$R/fae-stage-ia")
bg tr_ lightningdit-fae lightningdit-fae "$S_DIT" "$LIM_DIT" "${lat[@]}" "${curve[@]}"
bg tr_ tarflow-fae tarflow-fae "$S_TF" "$LIM_TF" "${lat[@]}" --set intervals.checkpoint=$ck
tr_ fae-stage-ib fae-stage-ib "$S_IB" "$LIM_IB" "${enc[@]}" --set model.gan=false --set "model.init=$R/fae-stage-ia" --set intervals.checkpoint=$ck
tr_ fae-pixel-finetune fae-pixel-finetune "$S_FT" "$LIM_FT" "${enc[@]}" --set "model.init=$R/fae-stage-ia,$R/fae-stage-ib" --set intervals.checkpoint=$ck
DEC="$R/fae-stage-ia,$R/fae-pixel-finetune"
[ -d "$R/fae-pixel-finetune/checkpoints" ] || DEC="$R/fae-stage-ia,$R/fae-stage-ib"
k eval-fae "$LIM_EVAL" eval fae --backend "$BK" --encoder "$ENC" --fae "$DEC" ${FAE_EVAL:---count 10000 --train-limit 10000 --epochs 30} --batch 500 --grid "$S/reconstructions.png" --json &
waitk

smp() { # NAME RUN ARGS...
  local name=$1 run=$2
  shift 2
  k "sample-$name" "$LIM_EVAL" sample "$run" --backend "$BK" --weights model --fae "$DEC" --num "$COUNT" --steps 50 --columns 20 --out "$S/$name.png" --save-samples "$S/$name.safetensors" "$@"
}
smp dit-cfg "$R/lightningdit-fae" --cfg 2.5 --cfg-interval 0.3,1 &
smp dit "$R/lightningdit-fae" &
smp tarflow-cfg "$R/tarflow-fae" --cfg 1 &
smp tarflow "$R/tarflow-fae" &
waitk
for s in dit-cfg dit tarflow-cfg tarflow; do
  [ -f "$S/$s.safetensors" ] || continue
  k "fd-$s" "$LIM_EVAL" eval fd --backend "$BK" --real fashion-mnist:test --fake "$S/$s.safetensors" --ssl-encoder "$ENC" --count "$COUNT" --batch 500 --json &
  k "acc-$s" "$LIM_EVAL" eval accuracy --backend "$BK" --classifier "$R/classifier" --samples "$S/$s.safetensors" --batch 500 --json &
done
k acc-real "$LIM_EVAL" eval accuracy --backend "$BK" --classifier "$R/classifier" --samples fashion-mnist:test --batch 500 --json &
waitk
echo "[$(el)s] kiln chain done"

[ "${CURVES:-0}" = 1 ] && curves fae "$PAR" --fae "$DEC"
if [ "${F32_CHECK:-0}" = 1 ]; then # does sampling precision explain an FD gap? the no-guidance LightningDiT samples again, f32
  KILN_PRECISION=f32 k sample-dit-f32 "$LIM_EVAL" sample "$R/lightningdit-fae" --backend "$BK" --weights model --fae "$DEC" --num "$COUNT" --steps 50 --columns 20 --out "$S/dit-f32.png" --save-samples "$S/dit-f32.safetensors" &&
    k fd-dit-f32 "$LIM_EVAL" eval fd --backend "$BK" --real fashion-mnist:test --fake "$S/dit-f32.safetensors" --ssl-encoder "$ENC" --count "$COUNT" --batch 500 --json
fi
[ -n "$PIX_PID" ] && wait "$PIX_PID"
[ -n "$TORCH_PID" ] && wait "$TORCH_PID"
[ "${TORCH:-1}" = 1 ] && [ "$SEQ" = 1 ] && run_torch
collect
