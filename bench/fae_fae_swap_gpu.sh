#!/usr/bin/env bash
# @file The other half of the FAE chain's LightningDiT FD comparison (issue 13 item 4): Kiln's LightningDiT trained
# on *PyTorch's* FAE latents, so that the FAE and the generator are separated (bench/fae_dit_swap_gpu.sh has
# PyTorch's DiT on Kiln's latents), plus more Kiln seeds on Kiln's FAE.
#
#   OUT=<dir> ENC=<ssl-encoder step dir> IA=<Kiln stage-Ia step dir> FT=<Kiln fine-tuned pixel decoder step dir> \
#     [KSEEDS="2"] [STEPS=4000] [SAMPLE_SEEDS=0,1,2] [END=<unix s>] bash bench/fae_fae_swap_gpu.sh
#
#  1. PyTorch's FAE stages on the same frozen encoder (bench/fae_pipeline_torch.py: stage Ia 2000, Ib 1200,
#     fine-tune 600 steps, as the chain), exported as Kiln checkpoints ($R/torch-fae/ia as soon as stage Ia ends,
#     $R/torch-fae/ft after the fine-tuning); Kiln's classifier beside it; Kiln's lightningdit-fae (seed 0) on
#     that FAE's latents once ia exists; Kiln's lightningdit-fae on Kiln's FAE for each seed of KSEEDS;
#  2. bench/fae_dit_swap.py score of each group with its own FAE's decoders (PyTorch's sampler, SAMPLE_SEEDS), and
#     `kiln sample` + `kiln eval fd` of the DiT on PyTorch's FAE (seed 0) for the Kiln sampler and FD code.
set -u -o pipefail
: "${OUT:?}" "${ENC:?}" "${IA:?}" "${FT:?}"
KSEEDS=${KSEEDS:-2} STEPS=${STEPS:-4000} SAMPLE_SEEDS=${SAMPLE_SEEDS:-0,1,2} END=${END:-0}
R=${RUNS:-/tmp/fae-swap2-runs} L=$OUT/logs S=$OUT/samples
source "$(dirname "$0")/fae_swap_lib.sh"
TF=$R/torch-fae
printf '{"fae-stage-ia":{"steps":2000},"fae-stage-ib":{"steps":1200},"fae-pixel-finetune":{"steps":600}}\n' > "$OUT/plan.json"
run torch-fae 100 python3 bench/fae_pipeline_torch.py --encoder "$ENC" --plan "$OUT/plan.json" --out "$R/torch" --precision bf16 \
  --probe-train 10000 --export-fae "$TF" &
run classifier 60 node cli/bin.mjs train fashion-classifier --backend cuda --steps 6000 --out "$R/classifier" &
dit() { # NAME SEED IA
  local l; l=$(( $(left) - 30 )); [ "$l" -gt 120 ] && l=120
  run "$1" $((l + 15)) node cli/bin.mjs train lightningdit-fae --backend cuda --steps "$STEPS" --time-limit "$l" --set seed="$2" \
    --set "model.latents.encoder.checkpoint=$ENC" --set "model.latents.checkpoint=$3" --set keepCheckpoints=1 --out "$R/$1"
}
for s in $KSEEDS; do dit "kiln-dit$s" "$s" "$IA" & done
( while [ ! -f "$TF/ia/model.safetensors" ] && [ "$(left)" -gt 40 ]; do sleep 0.5; done
  [ -f "$TF/ia/model.safetensors" ] && echo "[$(el)s] torch FAE stage Ia exported" && dit kiln-dit0-torchfae 0 "$TF/ia" ) &
wait
args=()
for s in $KSEEDS; do [ -d "$R/kiln-dit$s/checkpoints" ] && args+=(--kiln "kiln-dit$s=$R/kiln-dit$s"); done
[ ${#args[@]} -gt 0 ] && run score-kilnfae 40 python3 bench/fae_dit_swap.py score --encoder "$ENC" --fae "$IA,$FT" --classifier "$R/classifier" "${args[@]}" --seeds "$SAMPLE_SEEDS" --out "$OUT/swap-kilnfae.json" &
if [ -d "$R/kiln-dit0-torchfae/checkpoints" ] && [ -f "$TF/ft/model.safetensors" ]; then
  ( run sample-torchfae-cfg 30 node cli/bin.mjs sample "$R/kiln-dit0-torchfae" --backend cuda --weights model --fae "$TF/ia,$TF/ft" --num 1000 --steps 50 \
      --cfg 2.5 --cfg-interval 0.3,1 --columns 20 --out "$S/kiln-dit0-torchfae-cfg.png" --save-samples "$S/kiln-dit0-torchfae-cfg.safetensors" &&
    run fd-torchfae-cfg 20 node cli/bin.mjs eval fd --backend cuda --real fashion-mnist:test --fake "$S/kiln-dit0-torchfae-cfg.safetensors" --ssl-encoder "$ENC" --count 1000 --batch 500 --json ) &
  run score-torchfae 40 python3 bench/fae_dit_swap.py score --encoder "$ENC" --fae "$TF/ia,$TF/ft" --classifier "$R/classifier" \
    --kiln "kiln-dit0-torchfae=$R/kiln-dit0-torchfae" --seeds "$SAMPLE_SEEDS" --out "$OUT/swap-torchfae.json" &
fi
wait
cp "$R"/torch/torch_metrics.json "$R"/torch/torch_log.txt "$OUT/" 2>/dev/null
for d in "$R"/kiln-dit* "$R"/classifier; do [ -d "$d" ] && mkdir -p "$OUT/runs/$(basename "$d")" && cp "$d"/metrics.jsonl "$d"/config.json "$OUT/runs/$(basename "$d")/" 2>/dev/null; done
rm -f "$S"/*.safetensors
echo "== torch FAE"; grep -E 'FAE|FD|steps in' "$L/torch-fae.log"
echo "== Kiln DiT on PyTorch's FAE, Kiln sampler, kiln eval fd"; grep '^{' "$L/fd-torchfae-cfg.log" 2>/dev/null
for f in score-kilnfae score-torchfae; do echo "== $f"; sed -n '/^FD floor/,$p' "$L/$f.log" 2>/dev/null; done
echo "== times"; cat "$OUT/times.txt"
