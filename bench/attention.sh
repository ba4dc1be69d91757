#!/usr/bin/env bash
# Kiln flash attention vs PyTorch SDPA (bf16), forward + backward, same card, same call. Run on the GPU
# machine from the repository root (after `source .device/enter.sh`); prints a markdown table and writes
# the raw lines to ${OUT:-/tmp}/attention.jsonl. KILN_ATTN_VARIANTS (bench/attention.ts) adds a row per tile variant;
# ATTN_OVERLAP_BUILD=1 builds Kiln's kernels while SDPA is measured (Kiln measures after it).
set -euo pipefail
shapes=${*:-"256,16,256,72 64,16,1024,64 32,16,256,256 64,16,1024,128,causal"}
out=${OUT:-/tmp}/attention.jsonl
: > "$out"
if [ -n "${ATTN_OVERLAP_BUILD:-}" ]; then
  # Kiln builds its kernels (CPU) while SDPA measures; Kiln measures after SDPA has finished (the file).
  done_file=$(mktemp -u)
  (KILN_ATTN_WAIT_FILE=$done_file KILN_BACKEND=cuda tsx bench/attention.ts $shapes | sed -u 's/^/kiln /' | tee -a "$out") & kiln=$!
  python3 bench/attention_sdpa.py $shapes | sed -u 's/^/sdpa /' | tee -a "$out"; touch "$done_file"
  wait $kiln; rm -f "$done_file"
else
  python3 bench/attention_sdpa.py $shapes | sed 's/^/sdpa /' | tee -a "$out"
  KILN_BACKEND=cuda tsx bench/attention.ts $shapes | sed 's/^/kiln /' | tee -a "$out"
fi
node "$(dirname "$0")/attentionTable.cjs" "$out"
