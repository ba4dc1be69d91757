#!/bin/bash
# Kiln's image-folder loader next to PyTorch's DataLoader on the same folder, in the same call (issue 12).
# Logs and JSON lines under $OUT; stdout ends with the tables. BUDGET (seconds, default 42) bounds the script.
# 1) folders: $N (default 10,240) random 64x64 JPEGs in 10 classes (the earlier data-time runs' folder),
#    120 images of mixed sizes and formats, and $N_PHOTO (default 256) smooth 500x375 JPEGs (photo-sized);
# 2) streams, one epoch each, every image decoded (batch 128, resized to 28, greyscale, random flip, normalized):
#    Kiln's prefetching loader (bench/dataTime.ts stream: $CORES worker processes; JPEGs by WebAssembly mozjpeg, the
#    default, and by sharp) and PyTorch's DataLoader
#    (bench/data_torch.py stream: torchvision ImageFolder + PIL, num_workers = $CORES, pin_memory), with no step
#    (the loader's throughput) and a simulated $STEP ms step (the wait per step);
#    and the crop cache file (written by one epoch, read by the next run);
# 3) per-image CPU on one core (bench/dataTime.ts seq, bench/data_torch.py seq) and whether Kiln's crops equal
#    torchvision's (bench/data_torch.py compare, 1 and 3 channels).
OUT=${OUT:-/tmp/dataLoader}; mkdir -p "$OUT"
N=${N_IMGS:-10240}; NP=${N_PHOTO:-256}; STEP=${STEP:-2}
IMGS=/tmp/kiln-dl-$N; MIX=/tmp/kiln-dl-mixed; PHOTO=/tmp/kiln-dl-photo-$NP; LOGS=/tmp/kiln-dl-logs; mkdir -p "$LOGS"
START=$(date +%s)
left() { echo $(( ${BUDGET:-42} - ($(date +%s) - START) )); }
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && l=$l || l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
T() { local c=$(( $1 * ${CAPX:-1} )); shift; timeout -k 1 "$(cap "$c")" "$@"; }  # CAPX: scale the caps (a slow machine)
t() { echo "t=$(( $(date +%s) - START ))"; }
CORES=$(nproc)
TSX="node --import tsx"
export PYTHONUNBUFFERED=1
python3 -c "
import sys, os, torch, PIL, numpy
try:
    import torchvision; tv = torchvision.__version__
except Exception as e: tv = 'missing: %s' % e
print('python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', tv, 'PIL', PIL.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available(), 'cpus', os.cpu_count())
" > "$OUT/env-python.txt" 2>&1 &
node -e "const s=require('sharp'); console.log('node', process.version, 'sharp', s.versions.sharp, 'libvips', s.versions.vips, 'cores', require('os').availableParallelism(), require('os').cpus()[0].model)" > "$OUT/env-node.txt" 2>&1 &
PARTS=$(( (N + CORES - 1) / CORES ))
for i in $(seq 0 $((CORES - 1))); do T 8 $TSX bench/dataTime.ts images "$IMGS" $N 64 $((i * PARTS)) $PARTS > "$LOGS/images-$i.log" 2>&1 & done
T 8 $TSX bench/dataTime.ts images "$MIX" 120 mixed > "$LOGS/images-mixed.log" 2>&1 &
PP=$(( (NP + 7) / 8 ))
for i in $(seq 0 7); do T 8 $TSX bench/dataTime.ts images "$PHOTO" $NP 500x375 $((i * PP)) $PP > "$LOGS/images-photo-$i.log" 2>&1 & done
wait
grep -hv "^[0-9]* images (" "$LOGS"/images-*.log | head -20 > "$OUT/images.log"
echo "images $(find "$IMGS" -name '*.jpg' | wc -l) mixed $(find "$MIX" -type f | wc -l) photo $(find "$PHOTO" -name '*.jpg' | wc -l) $(du -sh "$IMGS" | cut -f1) $(t)"
S=$OUT/streams.jsonl
# the decisive rows first: both loaders' throughput, then the simulated step
LABEL="64x64, no step" T 8 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 0 ${CORES}p >> "$S" 2>>"$OUT/stream.log"; echo "kiln stream rc $? $(t)"
LABEL="64x64" T 12 python3 bench/data_torch.py stream "$IMGS" 28 1 128 $CORES 0 $STEP >> "$S" 2>>"$OUT/torch.log"; echo "torch stream rc $? $(t)"
LABEL="64x64, ${STEP} ms step" T 8 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 $STEP ${CORES}p >> "$S" 2>>"$OUT/stream.log"; echo "kiln stream rc $? $(t)"
LABEL="64x64, no step" T 8 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 0 ${CORES}p:sharp >> "$S" 2>>"$OUT/stream.log"; echo "kiln stream (sharp) rc $? $(t)"
# per-image CPU on one core each, and the exactness check, side by side (a few cores)
{ echo "| one decode at a time, one process | images | wall µs/img | CPU µs/img | images/s per core |"; echo "| --- | --- | --- | --- | --- |"; } > "$OUT/seq.md"
T 6 $TSX bench/dataTime.ts seq "$IMGS" 300 > "$OUT/seq-kiln.md" 2>"$OUT/seq.log" &
T 6 python3 bench/data_torch.py seq "$IMGS" 300 > "$OUT/seq-torch.md" 2>>"$OUT/seq.log" &
{ for C in 1 3; do
    T 6 $TSX bench/dataTime.ts crops "$MIX" 28 $C "$OUT/kiln-crops-$C.bin" && T 6 python3 bench/data_torch.py crops "$MIX" 28 $C "$OUT/torch-crops-$C.bin" \
      && python3 bench/data_torch.py compare "$MIX" 28 $C "$OUT/kiln-crops-$C.bin" "$OUT/torch-crops-$C.bin"
  done > "$OUT/crops.md" 2>"$OUT/crops.log"; } &
wait
cat "$OUT/seq-kiln.md" "$OUT/seq-torch.md" >> "$OUT/seq.md"; echo "seq + crops $(t)"
LABEL="64x64, no step" T 8 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 0 $((CORES - 1))p >> "$S" 2>>"$OUT/stream.log"; echo "kiln stream rc $? $(t)"
LABEL="64x64, no step" T 8 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 0 ${CORES}px2 >> "$S" 2>>"$OUT/stream.log"; echo "kiln stream rc $? $(t)"
LABEL="500x375, no step" T 6 $TSX bench/dataTime.ts stream "$PHOTO" 28 1 128 0 ${CORES}p >> "$S" 2>>"$OUT/stream.log"; echo "kiln photo rc $? $(t)"
LABEL="500x375" T 8 python3 bench/data_torch.py stream "$PHOTO" 28 1 128 $CORES 0 >> "$S" 2>>"$OUT/torch.log"; echo "torch photo rc $? $(t)"
# the crop cache file: written by a decoding epoch, then read (no decode) under the same step
CACHE_FILE=/tmp/kiln-dl-crops.kc LABEL="64x64, no step, writing the crop cache" T 8 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 0 ${CORES}p >> "$S" 2>>"$OUT/stream.log"; echo "kiln cache write rc $? $(t)"
CACHE_FILE=/tmp/kiln-dl-crops.kc LABEL="64x64, ${STEP} ms step, from the crop cache" T 8 $TSX bench/dataTime.ts stream "$IMGS" 28 1 128 $STEP ${CORES}p >> "$S" 2>>"$OUT/stream.log"; echo "kiln cache read rc $? $(t)"
rm -f "$OUT"/*.bin
cat "$OUT/env-python.txt" "$OUT/env-node.txt"
echo "| folder | loader | step ms | batches | first batch ms | images/s (after the first batch) | wait median ms | wait mean ms | wait max ms | steps waiting > 1 ms | data share |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
python3 bench/data_torch.py table "$S"
cat "$OUT/seq.md"
echo "| channels | images (mixed folder, 28x28 crops) | count | equal to torchvision's, bit for bit | max difference (levels) | bytes that differ |"
echo "| --- | --- | --- | --- | --- | --- |"
cat "$OUT/crops.md"
t
