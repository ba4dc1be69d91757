#!/usr/bin/env bash
# Kiln flash attention vs PyTorch SDPA (bf16), forward + backward, same card, same call. Run on the GPU
# machine from the repository root (after `source .device/enter.sh`); prints a markdown table and writes
# the raw lines to ${OUT:-/tmp}/attention.jsonl. KILN_ATTN_VARIANTS (bench/attention.ts) adds a row per tile variant.
set -euo pipefail
shapes=${*:-"256,16,256,72 64,16,1024,64 32,16,256,256 64,16,1024,128,causal"}
out=${OUT:-/tmp}/attention.jsonl
: > "$out"
python3 bench/attention_sdpa.py $shapes | sed 's/^/sdpa /' | tee -a "$out"
KILN_BACKEND=cuda tsx bench/attention.ts $shapes | sed 's/^/kiln /' | tee -a "$out"
node "$(dirname "$0")/attentionTable.cjs" "$out"
