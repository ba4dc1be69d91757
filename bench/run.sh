#!/usr/bin/env bash
# Kiln (CUDA backend) vs PyTorch eager (f32, TF32 off): training step time of the same programs, same
# batch, same GPU, same run. Run on the GPU machine from the repository root (after
# `source .device/enter.sh`); prints a table and writes the raw lines to ${OUT:-/tmp}/bench.jsonl.
set -euo pipefail
specs=${*:-"mlp:128 block:8 lightningdit:16"}
out=${OUT:-/tmp}/bench.jsonl
: > "$out"
KILN_BACKEND=cuda tsx bench/trainStep.ts $specs | sed 's/^/kiln /' | tee -a "$out"
python3 bench/torch_baseline.py $specs | sed 's/^/torch /' | tee -a "$out"
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
const k = {}, t = {};
for (const l of lines) { const [who, json] = [l.slice(0, l.indexOf(" ")), JSON.parse(l.slice(l.indexOf(" ") + 1))]; (who === "kiln" ? k : t)[json.program] = json; }
console.log("| program | batch | kernels | Kiln step ms | PyTorch step ms | Kiln / PyTorch | Kiln compile ms (+NVRTC) | device |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const p of Object.keys(k)) { const a = k[p], b = t[p] ?? {}; console.log(`| ${p} | ${a.batch} | ${a.kernels} | ${a.stepMs} | ${b.stepMs} | ${(a.stepMs / b.stepMs).toFixed(2)}x | ${a.compileMs} (+${a.nvrtcMs}) | ${a.device} |`); }
' "$out"
