#!/usr/bin/env bash
# Kiln's bf16 GEMMs next to cuBLAS (torch.matmul bf16), same shapes, same GPU, same call. Run on the
# GPU machine from the repository root (after `source .device/enter.sh`); prints a markdown table and
# writes the raw lines to ${OUT:-/tmp}/gemm.jsonl.   bash bench/gemm.sh [names...]
set -euo pipefail
out=${OUT:-/tmp}/gemm.jsonl
: > "$out"
# cuBLAS before and after Kiln (the faster of the two counts), so clocks and power state do not favour Kiln.
python3 bench/gemm_torch.py "$@" | sed 's/^/torch /' | tee -a "$out"
KILN_BACKEND=cuda tsx bench/gemm.ts "$@" | sed 's/^/kiln /' | tee -a "$out"
python3 bench/gemm_torch.py "$@" | sed 's/^/torch /' | tee -a "$out"
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
const k = {}, t = {};
for (const l of lines) { const who = l.slice(0, l.indexOf(" ")), j = JSON.parse(l.slice(l.indexOf(" ") + 1)); if (who === "kiln") k[j.gemm] = j; else if (!t[j.gemm] || j.tflops > t[j.gemm].tflops) t[j.gemm] = j; }
console.log("| GEMM | M×N×K | layout | Kiln TFLOP/s | cuBLAS TFLOP/s | Kiln / cuBLAS | Kiln tile |");
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const g of Object.keys(k)) { const a = k[g], b = t[g] ?? {}; console.log(`| ${g} | ${a.m}×${a.n}×${a.k} | ${a.layout} | ${a.tflops} | ${b.tflops} | ${(100 * a.tflops / b.tflops).toFixed(1)}% | ${a.tile} |`); }
' "$out"
