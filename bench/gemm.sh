#!/usr/bin/env bash
# Kiln's bf16 GEMMs next to cuBLAS (torch.matmul bf16), same shapes, same GPU, same call. Run on the
# GPU machine from the repository root (after `source .device/enter.sh`); prints a markdown table and
# writes the raw lines to ${OUT:-/tmp}/gemm.jsonl.   bash bench/gemm.sh [names...]
# Kiln twice: as a user gets it (KILN_GEMM_AUTOTUNE=1: generated kernel, cuBLAS and cuBLASLt measured
# per shape, the fastest kept in the tuning cache) and the generated tensor-core kernel alone
# (KILN_GEMM_TUNING=off KILN_GEMM_DEFAULT=generated: the tiling stage's schedule, rendered by Kiln).
set -euo pipefail
out=${OUT:-/tmp}/gemm.jsonl
: > "$out"
# cuBLAS before and after Kiln (the faster of the two counts), so clocks and power state do not favour Kiln.
python3 bench/gemm_torch.py "$@" | sed 's/^/torch /' | tee -a "$out"
KILN_BACKEND=cuda KILN_GEMM_AUTOTUNE=1 tsx bench/gemm.ts "$@" | sed 's/^/kiln /' | tee -a "$out"
KILN_BACKEND=cuda KILN_GEMM_TUNING=off KILN_GEMM_DEFAULT=generated tsx bench/gemm.ts "$@" | sed 's/^/generated /' | tee -a "$out"
python3 bench/gemm_torch.py "$@" | sed 's/^/torch /' | tee -a "$out"
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
const k = {}, gen = {}, t = {};
for (const l of lines) { const who = l.slice(0, l.indexOf(" ")), j = JSON.parse(l.slice(l.indexOf(" ") + 1)); if (who === "kiln") k[j.gemm] = j; else if (who === "generated") gen[j.gemm] = j; else if (!t[j.gemm] || j.tflops > t[j.gemm].tflops) t[j.gemm] = j; }
console.log("| GEMM | M×N×K | layout | Kiln as run TFLOP/s | provider (tile) | generated TFLOP/s | cuBLAS (torch) TFLOP/s | Kiln / cuBLAS | generated / cuBLAS |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const g of Object.keys(k)) { const a = k[g], c = gen[g] ?? {}, b = t[g] ?? {}; console.log(`| ${g} | ${a.m}×${a.n}×${a.k} | ${a.layout} | ${a.tflops} | ${a.tile} | ${c.tflops ?? "—"} | ${b.tflops} | ${(100 * a.tflops / b.tflops).toFixed(1)}% | ${c.tflops ? (100 * c.tflops / b.tflops).toFixed(1) + "%" : "—"} |`); }
' "$out"
