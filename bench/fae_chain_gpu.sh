#!/usr/bin/env bash
# @file The FAE chain on the GPU machine, Kiln then PyTorch with the same step counts (issue 13 items 2 and 4).
#
#   ENC=<ssl-encoder run> OUT=<dir> [LIM_*=seconds] bash bench/fae_chain_gpu.sh
#
# Kiln (cuda, f32): fashion-classifier ‖ fae-stage-ia → (fae-stage-ib → fae-pixel-finetune) ‖ lightningdit-fae ‖
# tarflow-fae, each `kiln train` bounded by --time-limit (and `timeout -k`), stages without a dependency run
# at the same time (separate processes, one GPU); then samples (LightningDiT with and without interval CFG,
# TarFlow guided), FD in the SSL encoder's space (N = $COUNT, real-vs-real floor), classifier accuracy on the
# samples, `kiln eval fae` (PSNR/SSIM, probe of reconstructed vs raw features). Then bench/fae_pipeline_torch.py
# runs the same stages for the step counts Kiln reached (plan.json). bench/fae_chain_table.py prints the table.
# CURVES=1 adds issue 13 item 3: lightningdit-pixels (the same DiT on the images, patch 4) trains beside
# lightningdit-fae, both checkpointing every $EVERY steps; up to $CURVE_POINTS common checkpoint steps are
# sampled ($CURVE_COUNT samples, default 500, Euler with $CURVE_STEPS grid points, default 25, no guidance) and
# measured (FD at N = $CURVE_COUNT with its floor) for both, next to the chain's evaluations: $OUT/curves.tsv.
# Logs: $OUT/logs; runs: $OUT/runs (checkpoints of the last step only).
set -u
OUT=${OUT:-out/fae-chain}
ENC=${ENC:?ENC: the ssl-encoder run directory}
COUNT=${COUNT:-1000}
R=$OUT/runs L=$OUT/logs
mkdir -p "$R" "$L"
BK=${BACKEND:-cuda}
KB=(--backend "$BK" --precision f32)
EXTRA=()
[ -n "${BATCH:-}" ] && EXTRA=(--batch "$BATCH")
: "${LIM_CLF:=12}" "${LIM_IA:=10}" "${LIM_IB:=10}" "${LIM_FT:=6}" "${LIM_DIT:=12}" "${LIM_TF:=12}" "${LIM_EVAL:=20}"
: "${STEPS:=4000}" "${TORCH_LIMIT:=40}"
T0=$(date +%s%N)

# k NAME LIMIT ARGS...: one kiln command, its log, its wall time (times.txt: name rc seconds)
k() {
  local name=$1 lim=$2 t0
  shift 2
  t0=$(date +%s%N)
  timeout -k 2 "$lim" node cli/bin.mjs "$@" > "$L/$name.log" 2>&1
  local rc=$?
  echo "$name $rc $(( ($(date +%s%N) - t0) / 1000000 ))" >> "$OUT/times.txt"
  echo "[$(( ($(date +%s%N) - T0) / 1000000000 ))s] $name rc=$rc"
}
ck() { echo "--set" "model.encoder.checkpoint=$ENC"; }
common=(--steps "$STEPS" --set intervals.checkpoint=100000 --set keepCheckpoints=1 "${EXTRA[@]}")

k classifier $((LIM_CLF + 20)) train fashion-classifier "${KB[@]}" --steps "${CLF_STEPS:-$STEPS}" --time-limit "$LIM_CLF" --set intervals.checkpoint=100000 "${EXTRA[@]}" --out "$R/classifier" &
k fae-stage-ia $((LIM_IA + 20)) train fae-stage-ia "${KB[@]}" "${common[@]}" --time-limit "$LIM_IA" $(ck) --out "$R/fae-stage-ia"
lat=(--set "model.latents.encoder.checkpoint=$ENC" --set "model.latents.checkpoint=$R/fae-stage-ia")
ditck=()
[ "${CURVES:-0}" = 1 ] && ditck=(--set "intervals.checkpoint=${EVERY:-50}" --set keepCheckpoints=1000)
k lightningdit-fae $((LIM_DIT + 20)) train lightningdit-fae "${KB[@]}" "${common[@]}" "${ditck[@]}" --time-limit "$LIM_DIT" "${lat[@]}" --out "$R/lightningdit-fae" &
if [ "${CURVES:-0}" = 1 ]; then
  k lightningdit-pixels $((LIM_DIT + 20)) train lightningdit-pixels "${KB[@]}" --steps "$STEPS" "${EXTRA[@]}" "${ditck[@]}" --time-limit "$LIM_DIT" --out "$R/lightningdit-pixels" &
fi
k tarflow-fae $((LIM_TF + 20)) train tarflow-fae "${KB[@]}" "${common[@]}" --time-limit "$LIM_TF" "${lat[@]}" --out "$R/tarflow-fae" &
k fae-stage-ib $((LIM_IB + 20)) train fae-stage-ib "${KB[@]}" "${common[@]}" --time-limit "$LIM_IB" $(ck) --set model.gan=false --set "model.init=$R/fae-stage-ia" --out "$R/fae-stage-ib"
k fae-pixel-finetune $((LIM_FT + 20)) train fae-pixel-finetune "${KB[@]}" "${common[@]}" --time-limit "$LIM_FT" $(ck) --set "model.init=$R/fae-stage-ib" --out "$R/fae-pixel-finetune"
wait

run_torch() {
  python3 bench/fae_chain_table.py plan "$R" > "$OUT/plan.json"
  # TORCH_LIMIT_END (epoch seconds) caps the torch side at a deadline instead of a length
  [ -n "${TORCH_LIMIT_END:-}" ] && TORCH_LIMIT=$(( TORCH_LIMIT_END - $(date +%s) ))
  [ "$TORCH_LIMIT" -lt 5 ] && TORCH_LIMIT=5
  timeout -k 2 "$TORCH_LIMIT" python3 bench/fae_pipeline_torch.py --encoder "$ENC" --plan "$OUT/plan.json" --out "$OUT/torch" --count "$COUNT" --probe-train 10000 ${TORCH_ARGS:-} > "$L/torch.log" 2>&1
  local rc=$?
  echo "[$(( ($(date +%s%N) - T0) / 1000000000 ))s] torch rc=$rc"
}
# TORCH_PARALLEL=1: the PyTorch side starts now (the step counts are known), beside Kiln's sampling and evaluation
TORCH_PID=
if [ "${TORCH_PARALLEL:-0}" = 1 ]; then run_torch & TORCH_PID=$!; fi
waitk() { local p; for p in $(jobs -p); do [ "$p" = "$TORCH_PID" ] || wait "$p"; done; } # Kiln's jobs, not torch

DEC="$R/fae-stage-ia,$R/fae-pixel-finetune"
[ -d "$R/fae-pixel-finetune/checkpoints" ] || DEC="$R/fae-stage-ia,$R/fae-stage-ib"
S=$OUT/samples
mkdir -p "$S"
smp() { # NAME RUN ARGS...
  local name=$1 run=$2
  shift 2
  k "sample-$name" "$LIM_EVAL" sample "$run" --backend "$BK" --weights model --fae "$DEC" --num "$COUNT" --steps 50 --columns 20 --out "$S/$name.png" --save-samples "$S/$name.safetensors" "$@"
}
smp dit-cfg "$R/lightningdit-fae" --cfg 2.5 --cfg-interval 0.3,1 &
smp dit "$R/lightningdit-fae" &
smp tarflow-cfg "$R/tarflow-fae" --cfg 1 &
smp tarflow "$R/tarflow-fae" &
if [ "${CURVES:-0}" = 1 ]; then # item 3: FD of both DiTs at common checkpoint steps
  common_steps=$(comm -12 <(ls "$R/lightningdit-fae/checkpoints" 2>/dev/null | sort) <(ls "$R/lightningdit-pixels/checkpoints" 2>/dev/null | sort))
  n=$(echo "$common_steps" | grep -c step-)
  pick=$(echo "$common_steps" | grep step- | awk -v n="$n" -v k="${CURVE_POINTS:-4}" 'BEGIN{srand(0)} { a[NR]=$0 } END { if (n <= k) { for (i = 1; i <= n; i++) print a[i] } else { for (j = 1; j <= k; j++) print a[int(j * n / k)] } }')
  for ckn in $pick; do
    for space in fae pixels; do
      run=$R/lightningdit-$space
      fae=()
      [ "$space" = fae ] && fae=(--fae "$DEC")
      ( k "curve-sample-$space-$ckn" "$LIM_EVAL" sample "$run/checkpoints/$ckn" --backend "$BK" --weights model "${fae[@]}" --num "${CURVE_COUNT:-500}" --steps "${CURVE_STEPS:-25}" --columns 20 --out "$S/curve-$space-$ckn.png" --save-samples "$S/curve-$space-$ckn.safetensors" &&
        k "curve-fd-$space-$ckn" "$LIM_EVAL" eval fd --backend "$BK" --real fashion-mnist:test --fake "$S/curve-$space-$ckn.safetensors" --ssl-encoder "$ENC" --count "${CURVE_COUNT:-500}" --batch 500 --json ) &
    done
  done
fi
k eval-fae "$LIM_EVAL" eval fae --backend "$BK" --encoder "$ENC" --fae "$DEC" ${FAE_EVAL:---count 10000 --train-limit 10000 --epochs 30} --batch 500 --grid "$S/reconstructions.png" --json &
waitk
for s in dit-cfg dit tarflow-cfg tarflow; do
  [ -f "$S/$s.safetensors" ] || continue
  k "fd-$s" "$LIM_EVAL" eval fd --backend "$BK" --real fashion-mnist:test --fake "$S/$s.safetensors" --ssl-encoder "$ENC" --count "$COUNT" --batch 500 --json &
  k "acc-$s" "$LIM_EVAL" eval accuracy --backend "$BK" --classifier "$R/classifier" --samples "$S/$s.safetensors" --batch 500 --json &
done
k acc-real "$LIM_EVAL" eval accuracy --backend "$BK" --classifier "$R/classifier" --samples fashion-mnist:test --batch 500 --json &
waitk
echo "[$(( ($(date +%s%N) - T0) / 1000000000 ))s] kiln done"
if [ "${CURVES:-0}" = 1 ]; then
  printf 'space\tstep\tfd\tfloor\n' > "$OUT/curves.tsv"
  for f in "$L"/curve-fd-*.log; do
    [ -f "$f" ] || continue
    b=$(basename "$f" .log); b=${b#curve-fd-}; space=${b%%-*}; step=$((10#${b##*step-}))
    python3 -c "import json,sys; l=[x for x in open(sys.argv[1]) if x.startswith('{')]; d=json.loads(l[-1]) if l else {}; print(f\"$space\t$step\t{d.get('fd','nan')}\t{d.get('floor','nan')}\")" "$f" >> "$OUT/curves.tsv"
  done
  sort -k1,1 -k2,2n "$OUT/curves.tsv"
  find "$R/lightningdit-fae/checkpoints" "$R/lightningdit-pixels/checkpoints" -name '*.safetensors' -delete 2>/dev/null
fi
rm -f "$S"/curve-*.safetensors

[ "${TORCH_PARALLEL:-0}" = 1 ] || run_torch
wait
python3 bench/fae_chain_table.py table "$OUT" | tee "$OUT/table.md"
