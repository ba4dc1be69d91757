#!/usr/bin/env bash
# Data-parallel scaling of LightningDiT training steps, Kiln (bench/dataParallel.ts: NCCL bucket
# all-reduces on a second stream inside the step's CUDA graph, bf16 autocast) next to PyTorch DDP
# (bench/ddp_torch.py: eager bf16, DDP's 25 MiB buckets), same model, same global batch, same card, in
# one call. Weak scaling: the per-GPU batch is fixed (PER_GPU_B1, default 128, for B/1; PER_GPU_XL,
# default 64, for XL/1), the global batch is that times the GPUs. Efficiency at N GPUs = throughput(N) /
# (N · throughput(1)). Run on the GPU machine from the repository root (after `source .device/enter.sh`):
#   OUT=out/scaling bash bench/scaling.sh [GPU counts]        default: "1 2 4 8", those above the visible GPUs skipped
# SPECS="b1 xl" picks the models (default both); LIMIT=SECONDS caps each run (default 300). NVLink
# multicast stays off (NCCL_NVLS_ENABLE=0). Raw JSON lines: $OUT/kiln_<N>.jsonl, $OUT/torch_<N>.jsonl;
# the table: bench/scaling_table.py $OUT.
set -uo pipefail
out=${OUT:-/tmp/kiln-scaling}; mkdir -p "$out"
counts=${*:-1 2 4 8}
limit=${LIMIT:-300}
specs=${SPECS:-b1 xl}
b1=${PER_GPU_B1:-128}; xl=${PER_GPU_XL:-64}
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
visible=$(nvidia-smi -L 2>/dev/null | wc -l)
for n in $counts; do
  if [ "$n" -gt "$visible" ]; then echo "skip $n GPUs: $visible visible"; continue; fi
  kspecs=""; tspecs=""
  for s in $specs; do
    case $s in
      b1) kspecs="$kspecs lightningdit:$((b1 * n))"; tspecs="$tspecs lightningdit:$((b1 * n))";;
      xl) kspecs="$kspecs lightningdit:$((xl * n)):XL/1"; tspecs="$tspecs lightningdit_xl:$((xl * n))";;
    esac
  done
  port=$((29600 + n))
  pids=()
  for ((r = 0; r < n; r++)); do
    KILN_WORLD_SIZE=$n KILN_RANK=$r KILN_LOCAL_RANK=$r KILN_RENDEZVOUS=127.0.0.1:$port \
      timeout "$limit" tsx bench/dataParallel.ts $kspecs > "$out/kiln_${n}_rank$r.jsonl" 2> "$out/kiln_${n}_rank$r.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  cp "$out/kiln_${n}_rank0.jsonl" "$out/kiln_$n.jsonl"
  timeout "$limit" python3 -m torch.distributed.run --nproc_per_node "$n" --master_port $((29700 + n)) bench/ddp_torch.py $tspecs \
    > "$out/torch_$n.jsonl" 2> "$out/torch_$n.err"
done
python3 bench/scaling_table.py "$out"
