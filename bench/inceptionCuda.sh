#!/bin/bash
# Inception-v3 FID features on the GPU (issue 12). Logs under $OUT; stdout ends with a short table.
# BUDGET (seconds, default 28) bounds the whole script.
# 1) kiln eval fid on $BACKEND end to end: the width-÷8 random-weight Inception (golden/data/inception/w8),
#    16 real and 8 fake 24x24 images (bench/data/fid-{real,fake}.safetensors, from fid_sets), --count 8,
#    resized to 75: FD and floor against pytorch-fid's statistic on PyTorch's features (0.17320026457309723,
#    0.059786271303892136; the CPU test's bound is 1e-4 relative);
# 2) the full-width FID network (2048-d) at batch 32 on $BACKEND vs the CPU oracle's stored features
#    (bench/inceptionCuda.ts check), and its images/s.
OUT=${OUT:-/tmp/inceptionCuda}; mkdir -p "$OUT"
B=${BACKEND:-cuda}
START=$(date +%s)
left() { echo $(( ${BUDGET:-28} - ($(date +%s) - START) )); }
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && l=$l || l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
timeout -k 1 "$(cap ${CAP_FID:-10})" node cli/bin.mjs eval fid --inception golden/data/inception/w8.safetensors --real bench/data/fid-real.safetensors \
  --fake bench/data/fid-fake.safetensors --count 8 --resize 75 --range 0,1 --backend "$B" --batch 4 --json > "$OUT/fid.json" 2> "$OUT/fid.log"; echo "eval fid rc $?"
timeout -k 1 "$(cap ${CAP_FULL:-20})" node --import tsx bench/inceptionCuda.ts check bench/data/inception-full-cpu-features.safetensors "$B" 32 > "$OUT/full.log" 2>&1; echo "full rc $?"
tail -1 "$OUT/fid.json" | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{try{const o=JSON.parse(s);const r=(a,b)=>Math.abs(a-b)/b;console.log('| kiln eval fid, w8 Inception, $B | fd '+o.fd+' (rel '+r(o.fd,0.17320026457309723).toExponential(2)+' vs PyTorch) | floor '+o.floor+' (rel '+r(o.floor,0.059786271303892136).toExponential(2)+') |')}catch(e){console.log('eval fid: no result')}})"
grep -h "^backend\|compiled\|seconds\|ms" "$OUT/fid.log" | head -3 | cut -c1-200
grep "^|" "$OUT/full.log"; tail -2 "$OUT/full.log" | cut -c1-300
