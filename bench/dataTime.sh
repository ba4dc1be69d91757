#!/bin/bash
# Data time vs step time on the GPU machine (issue 12). Logs under $OUT; stdout ends with tables.
# BUDGET (seconds, default 38) bounds the whole script: each part gets at most its CAP_* and what is left.
# 1) an image folder of $N_IMGS (default 2,560) random 64x64 JPEGs (sharp), 10 classes ($IMGS, not under $OUT);
# 2) the loader alone (bench/dataTime.ts decode): batch 128, resized to 28, greyscale; ms per batch and
#    images/s decoding (cache off). DECODE_ROWS: WORKERS[:VIPS_THREADS][:nocache] items (COUNTp worker
#    processes, the default kind; COUNTt worker threads, which share libuv's one pool; 0 the main thread);
# 3) kiln train of the example conv net (examples/my-model.ts, a ~1.6 ms step) on $BACKEND from that folder,
#    batch 128 (N_IMGS/128 batches per epoch), the job's default decode workers (processes, one per core) and
#    prefetch (256 MiB of batches): data_ms (the trainer's wait for the next batch) vs step_ms (feeds + device
#    step + loss fetch) in the first epoch (decoding) and in later epochs (from the decoded-image cache);
# 4) REAL=1: the shipped job lightningdit-pixels (LightningDiT S/4, depth 6, width 192, ~6 ms step on the H200)
#    on the same folder for $REAL_STEPS steps, the same two rows.
# Every part runs as one node process (node --import tsx) under timeout -k 1, writing to files (no pipes).
OUT=${OUT:-/tmp/dataTime}; mkdir -p "$OUT"
B=${BACKEND:-cuda}
N=${N_IMGS:-2560}
IMGS=${IMGS:-/tmp/kiln-dataTime-imgs-$N}
START=$(date +%s)
left() { echo $(( ${BUDGET:-38} - ($(date +%s) - START) )); }
# at most $1 s and what is left, at least 1 (timeout 0 would mean no limit)
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && l=$l || l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
T() { local c=$1; shift; timeout -k 1 "$(cap "$c")" "$@"; }
CORES=$(nproc)
PER_EPOCH=$((N / 128))
TSX="node --import tsx"; $TSX -e 1 > /dev/null 2>&1 || TSX=tsx  # one process when tsx loads as a hook
# the folder is written by one process per core (sharp in one process does not scale: bench/RESULTS.md)
if [ ! -f "$IMGS/c9/$((N - 1)).jpg" ]; then
  PARTS=$(( (N + CORES - 1) / CORES ))
  for i in $(seq 0 $((CORES - 1))); do T ${CAP_IMAGES:-6} $TSX bench/dataTime.ts images "$IMGS" $N 64 $((i * PARTS)) $PARTS > "$OUT/images-$i.log" 2>&1 & done
  wait
fi
echo "images $(find "$IMGS" -name '*.jpg' | wc -l) t=$(( $(date +%s) - START ))"
{ echo "| loader alone (cores $CORES) | source | batches | ms per batch | images/s |"; echo "| --- | --- | --- | --- | --- |"; } > "$OUT/decode.md"
if [ -n "${DECODE_ROWS-${CORES}p:nocache}" ]; then
  T ${CAP_DECODE:-5} $TSX bench/dataTime.ts decode "$IMGS" 28 1 128 6 ${DECODE_ROWS-${CORES}p:nocache} >> "$OUT/decode.md" 2>"$OUT/decode.log"; echo "decode rc $? t=$(( $(date +%s) - START ))"
fi
cat > "$OUT/folder-job.json" <<JOB
{ "name": "folder-convnet", "model": { "kind": "user", "file": "$(pwd)/examples/my-model.ts" },
  "data": { "kind": "image_folder", "root": "$IMGS", "size": 28, "channels": 1, "flip": true },
  "schedule": { "lr": 3e-3, "warmup": 20 }, "batchSize": 128, "steps": ${CONV_STEPS:-400},
  "intervals": { "log": 50, "checkpoint": 100000, "plot": 100000 } }
JOB
T ${CAP_TRAIN:-12} node cli/bin.mjs train "$OUT/folder-job.json" --backend $B --out "$OUT/folder" > "$OUT/folder.log" 2>&1; echo "folder rc $? t=$(( $(date +%s) - START ))"
rm -rf "$OUT/folder/checkpoints"
if [ -n "$REAL" ]; then
  T ${CAP_REAL:-15} node cli/bin.mjs train lightningdit-pixels --backend $B --steps ${REAL_STEPS:-200} --out "$OUT/dit" \
    --set "data={\"kind\":\"image_folder\",\"root\":\"$IMGS\",\"size\":28,\"channels\":1,\"flip\":true,\"normalize\":{\"mean\":0.5,\"std\":0.5}}" \
    --set intervals.checkpoint=100000 --set intervals.plot=100000 > "$OUT/dit.log" 2>&1; echo "dit rc $? t=$(( $(date +%s) - START ))"
  rm -rf "$OUT/dit/checkpoints"
fi
cat "$OUT/decode.md"
echo "| kiln train, image folder of $N, $B | steps | data_ms median | data_ms mean | step_ms median | step_ms mean | data share |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
timeout -k 1 4 $TSX bench/dataTime.ts summary "conv net, batch 128" "$OUT/folder" $PER_EPOCH 2>>"$OUT/summary.log"
[ -n "$REAL" ] && timeout -k 1 4 $TSX bench/dataTime.ts summary "lightningdit-pixels, batch 128" "$OUT/dit" $PER_EPOCH 2>>"$OUT/summary.log"
grep -h "data .* ms vs step\|^backend" "$OUT/folder.log" "$OUT/dit.log" 2>/dev/null
