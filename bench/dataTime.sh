#!/bin/bash
# Data time vs step time on the GPU machine (issue 12). Logs under $OUT; stdout ends with tables.
# BUDGET (seconds, default 28) bounds the whole script: each part gets at most its CAP_* and what is left.
# 1) an image folder of 2,560 random 64x64 JPEGs (sharp), 10 classes ($IMGS, not under $OUT);
# 2) the loader alone (bench/dataTime.ts decode): batch 128, resized to 28, greyscale; ms per batch and
#    images/s decoding (cache off) and from the decoded-image cache. DECODE_ROWS (libuv's default 4
#    threads) and DECODE_UV_ROWS (UV_THREADPOOL_SIZE = cores): WORKERS[:VIPS_THREADS][:nocache] items;
# 3) kiln train of the example conv net (examples/my-model.ts) on $BACKEND from that folder, batch 128
#    (20 batches per epoch), decode workers = cores, prefetch depth 4: data_ms (the trainer's wait for the
#    next batch) vs step_ms (feeds + device step + loss fetch) in the first epoch (decoding) and in later
#    epochs (from the decoded-image cache).
# Every part runs as one node process (node --import tsx) under timeout -k 1, writing to files (no pipes).
OUT=${OUT:-/tmp/dataTime}; mkdir -p "$OUT"
B=${BACKEND:-cuda}
IMGS=${IMGS:-/tmp/kiln-dataTime-imgs}
START=$(date +%s)
left() { echo $(( ${BUDGET:-28} - ($(date +%s) - START) )); }
# at most $1 s and what is left, at least 1 (timeout 0 would mean no limit)
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && l=$l || l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
T() { local c=$1; shift; timeout -k 1 "$(cap "$c")" "$@"; }
CORES=$(nproc)
TSX="node --import tsx"; $TSX -e 1 > /dev/null 2>&1 || TSX=tsx  # one process when tsx loads as a hook
[ -f "$IMGS/c9/2559.jpg" ] || UV_THREADPOOL_SIZE=$CORES T ${CAP_IMAGES:-4} $TSX bench/dataTime.ts images "$IMGS" 2560 64 > "$OUT/images.log" 2>&1; echo "images rc $?"
{ echo "| loader alone (cores $CORES) | source | batches | ms per batch | images/s |"; echo "| --- | --- | --- | --- | --- |"; } > "$OUT/decode.md"
T ${CAP_DECODE:-6} $TSX bench/dataTime.ts decode "$IMGS" 28 1 128 6 ${DECODE_ROWS:-0:16:nocache 0 $CORES} >> "$OUT/decode.md" 2>"$OUT/decode.log"; echo "decode rc $?"
[ -n "${DECODE_UV_ROWS-$CORES}" ] && UV_THREADPOOL_SIZE=$CORES T ${CAP_UV:-5} $TSX bench/dataTime.ts decode "$IMGS" 28 1 128 6 ${DECODE_UV_ROWS-$CORES} >> "$OUT/decode.md" 2>>"$OUT/decode.log"; echo "decode uv$CORES rc $?"
cat > "$OUT/folder-job.json" <<JOB
{ "name": "folder-convnet", "model": { "kind": "user", "file": "$(pwd)/examples/my-model.ts" },
  "data": { "kind": "image_folder", "root": "$IMGS", "size": 28, "channels": 1, "flip": true },
  "schedule": { "lr": 3e-3, "warmup": 20 }, "batchSize": 128, "steps": 400,
  "intervals": { "log": 50, "checkpoint": 1000, "plot": 1000 } }
JOB
T ${CAP_TRAIN:-12} node cli/bin.mjs train "$OUT/folder-job.json" --backend $B --out "$OUT/folder" > "$OUT/folder.log" 2>&1; echo "folder rc $?"
rm -rf "$OUT/folder/checkpoints"
cat "$OUT/decode.md"
echo "| kiln train, image folder, $B | steps | data_ms median | data_ms mean | step_ms median | step_ms mean | data share |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
timeout -k 1 3 $TSX bench/dataTime.ts summary "conv net, batch 128" "$OUT/folder" 20 2>>"$OUT/summary.log"
grep -h "data .* ms vs step\|^backend" "$OUT/folder.log"
