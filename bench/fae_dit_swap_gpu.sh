#!/usr/bin/env bash
# @file The LightningDiT FD gap of the FAE chain, taken apart on the GPU machine (issue 13 item 4).
#
#   OUT=<dir> ENC=<ssl-encoder step dir> IA=<stage-Ia step dir> FT=<fine-tuned pixel decoder step dir> \
#     [KSEEDS="0 1"] [TSEEDS="0"] [STEPS=4000] [SAMPLE_SEEDS=0,1,2] [PARITY=1] [END=<unix s>] bash bench/fae_dit_swap_gpu.sh
#
# One FAE (Kiln's: ENC, IA, FT, e.g. a window's chain output), so the generators and their samplers are compared
# on the same latents, decoded by the same decoders and scored by the same code:
#  1. PARITY=1: the job's LightningDiT training step, Kiln (cuda, bf16) against PyTorch (cuda, bf16 autocast) on
#     identical weights, batches, noise, times and dropped labels (bench/ditStepParity.ts, dit_step_parity_torch.py),
#     and the step's in-graph draws on cuda (bench/flowNoiseCheck.ts);
#  2. Kiln's classifier (jobs/fashion-classifier.json) for the accuracy on samples;
#  3. Kiln's lightningdit-fae on the FAE's latents, one run per seed of KSEEDS (`--set seed=S`: initial weights,
#     batch order, Philox noise), and PyTorch's (bench/fae_dit_swap.py train) per seed of TSEEDS, STEPS steps
#     each, all at once;
#  4. `kiln sample` (Euler, 50 grid points, shift 0.4, CFG 2.5 on [0.3, 1] and none, seed 0) of the first Kiln
#     run and of the first PyTorch run (its weights under the reference's keys, read with --model);
#  5. bench/fae_dit_swap.py score: every run sampled by PyTorch's sampler for each of SAMPLE_SEEDS, and the
#     Kiln-sampled files; FD (N = 1000, SSL-encoder student features, floor test[0:N] vs test[N:2N]) and the
#     classifier's accuracy, with mean and spread per (trainer, sampler, guidance): $OUT/swap.json, $OUT/swap.md.
#     `kiln eval fd` of the Kiln-sampled files too (the chain's own FD code, for the same numbers).
set -u -o pipefail
: "${OUT:?}" "${ENC:?}" "${IA:?}" "${FT:?}"
KSEEDS=${KSEEDS:-0 1} TSEEDS=${TSEEDS:-0} STEPS=${STEPS:-4000} SAMPLE_SEEDS=${SAMPLE_SEEDS:-0,1,2} PARITY=${PARITY:-1} END=${END:-0}
R=${RUNS:-/tmp/fae-swap-runs} L=$OUT/logs S=$OUT/samples
source "$(dirname "$0")/fae_swap_lib.sh"
DEC="$IA,$FT"
SPEC='{"kind":"lightningdit","size":"S/1","config":{"inputSize":7,"inChannels":4,"numClasses":10,"depth":6,"hiddenSize":192,"numHeads":3,"classDropoutProb":0.1},"fae":{"preset":"fashionMnist"}}'

if [ "$PARITY" = 1 ]; then
  ( run parity-kiln 60 tsx bench/ditStepParity.ts --backend cuda --batch 128 --steps 30 --out "$R/parity" &&
    run parity-torch 40 python3 bench/dit_step_parity_torch.py "$R/parity"
    run noise 40 tsx bench/flowNoiseCheck.ts --backend cuda --batch 128 --steps 4
    cp "$R"/parity/*.json "$OUT/" 2>/dev/null ) &
fi
run classifier 60 node cli/bin.mjs train fashion-classifier --backend cuda --steps 6000 --out "$R/classifier" &
for s in $KSEEDS; do
  l=$(( $(left) - 45 )); [ "$l" -gt 150 ] && l=150
  run "kiln-dit$s" $((l + 20)) node cli/bin.mjs train lightningdit-fae --backend cuda --steps "$STEPS" --time-limit "$l" --set seed="$s" \
    --set "model.latents.encoder.checkpoint=$ENC" --set "model.latents.checkpoint=$IA" --set keepCheckpoints=1 --out "$R/kiln-dit$s" &
done
for s in $TSEEDS; do
  run "torch-dit$s" $(( $(left) - 30 )) python3 bench/fae_dit_swap.py train --encoder "$ENC" --ia "$IA" --seed "$s" --steps "$STEPS" \
    --deadline $(( END > 0 ? END - 45 : 0 )) --out "$R/torch-dit$s" &
done
wait
k0=${KSEEDS%% *} t0=${TSEEDS%% *}
files=()
smp() { # NAME CHECKPOINT ARGS...
  local name=$1 ck=$2; shift 2
  run "sample-$name" 30 node cli/bin.mjs sample "$ck" --backend cuda --weights model --fae "$DEC" --num 1000 --steps 50 --columns 20 \
    --out "$S/$name.png" --save-samples "$S/$name.safetensors" "$@"
}
smp "kiln-dit$k0-cfg" "$R/kiln-dit$k0" --cfg 2.5 --cfg-interval 0.3,1 &
smp "kiln-dit$k0-none" "$R/kiln-dit$k0" &
if [ -f "$R/torch-dit$t0/dit.safetensors" ]; then
  smp "torch-dit$t0-cfg" "$R/torch-dit$t0/dit.safetensors" --model "$SPEC" --latent-stats "$R/torch-dit$t0/latent_stats.json" --cfg 2.5 --cfg-interval 0.3,1 &
  smp "torch-dit$t0-none" "$R/torch-dit$t0/dit.safetensors" --model "$SPEC" --latent-stats "$R/torch-dit$t0/latent_stats.json" &
fi
wait
args=()
for s in $KSEEDS; do [ -d "$R/kiln-dit$s/checkpoints" ] && args+=(--kiln "kiln-dit$s=$R/kiln-dit$s"); done
for s in $TSEEDS; do [ -f "$R/torch-dit$s/dit.safetensors" ] && args+=(--torch "torch-dit$s=$R/torch-dit$s"); done
for f in "$S"/*.safetensors; do
  [ -f "$f" ] || continue
  b=$(basename "$f" .safetensors); who=Kiln; [ "${b#torch}" != "$b" ] && who=PyTorch
  args+=(--files "$who:${b%-*}:${b##*-}:0=$f")
  run "fd-$b" 30 node cli/bin.mjs eval fd --backend cuda --real fashion-mnist:test --fake "$f" --ssl-encoder "$ENC" --count 1000 --batch 500 --json &
done
run score 60 python3 bench/fae_dit_swap.py score --encoder "$ENC" --fae "$DEC" --classifier "$R/classifier" "${args[@]}" --seeds "$SAMPLE_SEEDS" --out "$OUT/swap.json"
wait
sed -n '/^FD floor/,$p' "$L/score.log" > "$OUT/swap.md"
for d in "$R"/kiln-dit* "$R"/classifier; do [ -d "$d" ] && mkdir -p "$OUT/runs/$(basename "$d")" && cp "$d"/metrics.jsonl "$d"/config.json "$OUT/runs/$(basename "$d")/" 2>/dev/null; done
for d in "$R"/torch-dit*; do [ -d "$d" ] && mkdir -p "$OUT/runs/$(basename "$d")" && cp "$d"/losses.json "$d"/latent_stats.json "$OUT/runs/$(basename "$d")/" 2>/dev/null; done
rm -f "$S"/*.safetensors
echo "== step parity"; sed -n '/^step/,$p' "$L/parity-torch.log" 2>/dev/null | tail -8
echo "== in-graph draws"; grep '^step' "$L/noise.log" 2>/dev/null
echo "== kiln eval fd"; for f in "$L"/fd-*.log; do [ -f "$f" ] && echo "$(basename "$f" .log) $(grep '^{' "$f" | tail -1)"; done
echo "== swap"; cat "$OUT/swap.md"
echo "== times"; cat "$OUT/times.txt"
