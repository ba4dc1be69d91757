#!/bin/bash
# Data time vs step time on the GPU (issue 12): training runs on cuda through the prefetching loader
# (depth 2); metrics.jsonl's data_ms (the trainer's wait for the next batch) vs step_ms (feeds + step
# + loss fetch). Logs under $OUT; stdout ends with a table (bench/dataTime.ts summary).
# 1) the example conv net (examples/my-model.ts) on an image folder of 2,560 random 64x64 JPEGs, decoded,
#    resized to 28 and greyscaled by sharp on libuv's pool (default 4 threads), batch 128;
# 2) the same with UV_THREADPOOL_SIZE=16 (one decode thread per core of the GPU machine);
# 3) fashion-mlp (Fashion-MNIST batches cut from memory);
# 4) if time is left: bench/inceptionCheck.ts (the Inception-v3 golden on the backend).
OUT=${OUT:-/tmp/dataTime}; mkdir -p "$OUT"
B=${BACKEND:-cuda}
tsx bench/dataTime.ts images "$OUT/imgs" 2560 64 > /dev/null 2>>"$OUT/images.log"
cat > "$OUT/folder-job.json" <<JOB
{ "name": "folder-convnet", "model": { "kind": "user", "file": "$(pwd)/examples/my-model.ts" },
  "data": { "kind": "image_folder", "root": "$OUT/imgs", "size": 28, "channels": 1, "flip": true },
  "schedule": { "lr": 3e-3, "warmup": 20 }, "batchSize": 128, "steps": 200,
  "intervals": { "log": 50, "checkpoint": 1000, "plot": 1000 } }
JOB
timeout ${T1:-15} node cli/bin.mjs train "$OUT/folder-job.json" --backend $B --steps ${FOLDER_STEPS:-300} --out "$OUT/folder" > "$OUT/folder.log" 2>&1; echo "folder rc $?"
UV_THREADPOOL_SIZE=16 timeout ${T2:-12} node cli/bin.mjs train "$OUT/folder-job.json" --backend $B --steps ${FOLDER_STEPS:-300} --out "$OUT/folder16" > "$OUT/folder16.log" 2>&1; echo "folder16 rc $?"
timeout ${T3:-10} node cli/bin.mjs train fashion-mlp --backend $B --steps ${MLP_STEPS:-400} --out "$OUT/mlp" --checkpoint-every 1000 --log-every 100 > "$OUT/mlp.log" 2>&1; echo "mlp rc $?"
echo "| run | steps | data_ms median | data_ms mean | step_ms median | step_ms mean | data share |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
tsx bench/dataTime.ts summary "image folder, 4 decode threads" "$OUT/folder" 2>>"$OUT/summary.log"
tsx bench/dataTime.ts summary "image folder, 16 decode threads" "$OUT/folder16" 2>>"$OUT/summary.log"
tsx bench/dataTime.ts summary "fashion-mlp (in memory)" "$OUT/mlp" 2>>"$OUT/summary.log"
grep -h "data .* ms vs step\|^backend" "$OUT/folder.log" "$OUT/folder16.log" "$OUT/mlp.log"
# Last, with what time is left: Inception-v3 (conv / pool / resize from IR primitives) on the backend vs the PyTorch golden.
timeout ${T4:-12} tsx bench/inceptionCheck.ts $B fid299 > "$OUT/inception.log" 2>&1; echo "inception rc $?"; cat "$OUT/inception.log" | grep "^|"
