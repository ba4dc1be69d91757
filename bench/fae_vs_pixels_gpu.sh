#!/usr/bin/env bash
# @file Issue 13 item 3 on the GPU machine: the same LightningDiT (depth 6, width 192, 3 heads, 49 tokens,
# same optimizer, batch, seed and step budget) trained on FAE latents (lightningdit-fae) and on raw pixels
# (lightningdit-pixels, patch 4), a checkpoint every $EVERY steps; from each checkpoint 1000 samples without
# guidance (Euler, 50 grid points) and their FD in the SSL encoder's space (N = $COUNT, real-vs-real floor).
#
#   ENC=<ssl-encoder run> IA=<fae-stage-ia run> DEC=<ia,pixel-decoder runs> OUT=<dir> STEPS=N EVERY=K bash bench/fae_vs_pixels_gpu.sh
#
# Writes $OUT/curves.tsv (space, step, fd, floor) and logs under $OUT/logs. The two trainings run at the same
# time (two processes on one GPU): the comparison is per step, not per second.
set -u
OUT=${OUT:-out/fae-vs-pixels}
ENC=${ENC:?} IA=${IA:?} DEC=${DEC:?}
COUNT=${COUNT:-1000} STEPS=${STEPS:-1200} EVERY=${EVERY:-300} LIM=${LIM:-25} LIM_EVAL=${LIM_EVAL:-20} PAR=${PAR:-8}
BK=${BACKEND:-cuda}
R=$OUT/runs L=$OUT/logs S=$OUT/samples
mkdir -p "$R" "$L" "$S"
T0=$(date +%s)
EXTRA=()
[ -n "${BATCH:-}" ] && EXTRA=(--batch "$BATCH")
common=(--backend "$BK" --precision f32 --steps "$STEPS" --time-limit "$LIM" --set "intervals.checkpoint=$EVERY" --set keepCheckpoints=100 "${EXTRA[@]}")
timeout -k 2 $((LIM + 20)) node cli/bin.mjs train lightningdit-fae "${common[@]}" --set "model.latents.encoder.checkpoint=$ENC" --set "model.latents.checkpoint=$IA" --out "$R/fae" > "$L/train-fae.log" 2>&1 &
timeout -k 2 $((LIM + 20)) node cli/bin.mjs train lightningdit-pixels "${common[@]}" --out "$R/pixels" > "$L/train-pixels.log" 2>&1 &
wait
echo "[$(( $(date +%s) - T0 ))s] trained: $(ls "$R"/fae/checkpoints 2>/dev/null | wc -l) + $(ls "$R"/pixels/checkpoints 2>/dev/null | wc -l) checkpoints"

jobs_=()
for space in fae pixels; do
  for ck in "$R/$space"/checkpoints/step-*; do
    [ -d "$ck" ] || continue
    n=$(basename "$ck")
    fae=()
    [ "$space" = fae ] && fae=(--fae "$DEC")
    (
      timeout -k 2 "$LIM_EVAL" node cli/bin.mjs sample "$ck" --backend "$BK" --weights model "${fae[@]}" --num "$COUNT" --steps 50 --columns 20 \
        --out "$S/$space-$n.png" --save-samples "$S/$space-$n.safetensors" > "$L/sample-$space-$n.log" 2>&1 &&
      timeout -k 2 "$LIM_EVAL" node cli/bin.mjs eval fd --backend "$BK" --real fashion-mnist:test --fake "$S/$space-$n.safetensors" --ssl-encoder "$ENC" --count "$COUNT" --batch 500 --json > "$L/fd-$space-$n.log" 2>&1
      rm -f "$S/$space-$n.safetensors"
    ) &
    jobs_+=($!)
    if [ "${#jobs_[@]}" -ge "$PAR" ]; then wait "${jobs_[0]}"; jobs_=("${jobs_[@]:1}"); fi
  done
done
wait
echo "[$(( $(date +%s) - T0 ))s] sampled and measured"
printf 'space\tstep\tfd\tfloor\n' > "$OUT/curves.tsv"
for f in "$L"/fd-*.log; do
  [ -f "$f" ] || continue
  b=$(basename "$f" .log); b=${b#fd-}; space=${b%%-*}; step=$((10#${b##*step-}))
  python3 -c "import json,sys; l=[x for x in open(sys.argv[1]) if x.startswith('{')]; d=json.loads(l[-1]) if l else {}; print(f\"$space\t$step\t{d.get('fd','nan')}\t{d.get('floor','nan')}\")" "$f" >> "$OUT/curves.tsv"
done
sort -k1,1 -k2,2n "$OUT/curves.tsv" | column -t
