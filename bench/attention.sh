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
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
const k = {}, t = {};
for (const l of lines) { const i = l.indexOf(" "); const j = JSON.parse(l.slice(i + 1)); if (l.slice(0, i) === "kiln") k[j.shape + (j.variant ? " " + j.variant : "")] = j; else t[j.shape] = j; }
console.log("| B,H,S,D | Kiln fwd ms | Kiln bwd ms | Kiln TFLOP/s | SDPA fwd ms | SDPA bwd ms | SDPA TFLOP/s | Kiln / SDPA throughput | fwd, bwd alone |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const s of Object.keys(k)) { const a = k[s], b = t[a.shape] ?? {}; console.log(`| ${s} | ${a.fwdMs} | ${a.bwdMs} | ${a.totalTflops} | ${b.fwdMs} | ${b.bwdMs} | ${b.totalTflops} | ${(b.totalMs / a.totalMs * 100).toFixed(0)}% | ${(b.fwdMs / a.fwdMs * 100).toFixed(0)}%, ${(b.bwdMs / a.bwdMs * 100).toFixed(0)}% |`); }
' "$out"
