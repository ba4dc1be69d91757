#!/bin/bash
# Kiln's image-folder loader next to PyTorch's DataLoader on the same folder, in the same call (issue 12).
# Logs and JSON lines under $OUT; stdout ends with the tables. BUDGET (seconds, default 28) bounds the script.
# 1) folders: $N (default 10,240) random 64x64 JPEGs in 10 classes (the earlier data-time runs' folder) and 120
#    images of mixed sizes and formats; while they are written, python imports torch (seconds on the GPU machine);
# 2) PyTorch (bench/data_torch.py all, one process): torchvision ImageFolder + PIL, DataLoader with num_workers =
#    $CORES, pin_memory, one epoch with no step (throughput) and one with a simulated $STEP ms step; then its crops of
#    the mixed folder against Kiln's (1 and 3 channels) and PIL's per-image CPU on one core;
# 3) Kiln (bench/dataTime.ts stream: $CORES worker processes, JPEGs by WebAssembly mozjpeg), one epoch each with no
#    step and with the $STEP ms step; then, while the budget lasts, Kiln's per-image CPU on one core (seq), the crop
#    cache file (one epoch writes it, the next run reads it under the same step) and $((CORES - 1)) workers.
# Every image decoded in every epoch (batch 128, resized to 28, greyscale, random flip, normalized).
OUT=${OUT:-/tmp/dataLoader}; mkdir -p "$OUT"
N=${N_IMGS:-10240}; STEP=${STEP:-2}
IMGS=/tmp/kiln-dl-$N; MIX=/tmp/kiln-dl-mixed; LOGS=/tmp/kiln-dl-logs; MARK=/tmp/kiln-dl-ready-$$; mkdir -p "$LOGS"
START=$(date +%s)
left() { echo $(( ${BUDGET:-28} - ($(date +%s) - START) )); }
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && l=$l || l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
T() { local c=$(( $1 * ${CAPX:-1} )); shift; timeout -k 1 "$(cap "$c")" "$@"; }  # CAPX: scale the caps (a slow machine)
t() { echo "t=$(( $(date +%s) - START ))"; }
CORES=$(nproc)
TSX="node --import tsx"
S=$OUT/streams.jsonl
export PYTHONUNBUFFERED=1
node -e "const s=require('sharp'); console.log('node', process.version, 'sharp', s.versions.sharp, 'libvips', s.versions.vips, 'cores', require('os').availableParallelism(), require('os').cpus()[0].model)" > "$OUT/env-node.txt" 2>&1 &
# PyTorch imports while the folders are written, then waits for $MARK
WAIT_FOR=$MARK LABEL="64x64" T 22 python3 bench/data_torch.py all "$IMGS" 28 1 128 $CORES 0,$STEP "$MIX" "$OUT" >> "$S" 2>"$OUT/torch.log" &
PY=$!
GEN=()
if [ ! -f "$IMGS/c9/$((N - 1)).jpg" ]; then
  PARTS=$(( (N + CORES - 1) / CORES ))
  for i in $(seq 0 $((CORES - 1))); do T 8 $TSX bench/dataTime.ts images "$IMGS" $N 64 $((i * PARTS)) $PARTS > "$LOGS/images-$i.log" 2>&1 & GEN+=($!); done
fi
{ T 8 $TSX bench/dataTime.ts images "$MIX" 120 mixed && for C in 1 3; do T 6 $TSX bench/dataTime.ts crops "$MIX" 28 $C "$OUT/kiln-crops-$C.bin"; done; } > "$LOGS/mixed.log" 2>&1 & GEN+=($!)
wait "${GEN[@]}"
touch "$MARK"
grep -hv "images (\|crops of" "$LOGS"/*.log | head -20 > "$OUT/images.log"
echo "images $(find "$IMGS" -name '*.jpg' | wc -l) mixed $(find "$MIX" -type f | wc -l) $(du -sh "$IMGS" | cut -f1) $(t)"
wait $PY; echo "torch rc $? $(t)"
LABEL="64x64, no step" T 6 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 0 ${CORES}p >> "$S" 2>>"$OUT/stream.log"; echo "kiln stream rc $? $(t)"
LABEL="64x64, ${STEP} ms step" T 6 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 $STEP ${CORES}p >> "$S" 2>>"$OUT/stream.log"; echo "kiln stream rc $? $(t)"
{ echo "| one decode at a time, one process | images | wall µs/img | CPU µs/img | images/s per core |"; echo "| --- | --- | --- | --- | --- |"; } > "$OUT/seq.md"
T 5 $TSX bench/dataTime.ts seq "$IMGS" 300 >> "$OUT/seq.md" 2>"$OUT/seq.log"; echo "kiln seq rc $? $(t)"
cat "$OUT/seq-torch.md" >> "$OUT/seq.md" 2>/dev/null
CACHE_FILE=/tmp/kiln-dl-crops-$$.kc LABEL="64x64, no step, writing the crop cache" T 4 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 0 ${CORES}p >> "$S" 2>>"$OUT/stream.log"; echo "kiln cache write rc $? $(t)"
CACHE_FILE=/tmp/kiln-dl-crops-$$.kc LABEL="64x64, ${STEP} ms step, from the crop cache" T 4 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 $STEP ${CORES}p >> "$S" 2>>"$OUT/stream.log"; echo "kiln cache read rc $? $(t)"
LABEL="64x64, no step" T 4 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 0 $((CORES - 1))p >> "$S" 2>>"$OUT/stream.log"; echo "kiln stream rc $? $(t)"
rm -f "$OUT"/*.bin "$MARK"
cat "$OUT/env-node.txt"
echo "| folder | loader | step ms | batches | first batch ms | images/s (after the first batch) | trainer process CPU ms per batch | wait median ms | wait mean ms | wait max ms | steps waiting > 1 ms | data share |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
python3 bench/data_torch.py table "$S"
cat "$OUT/seq.md"
echo "| channels | images (mixed folder, 28x28 crops) | count | equal to torchvision's, bit for bit | max difference (levels) | bytes that differ |"
echo "| --- | --- | --- | --- | --- | --- |"
cat "$OUT/crops.md" 2>/dev/null
t
