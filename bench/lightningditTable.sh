#!/usr/bin/env bash
# Issue 10's LightningDiT table in one call: B/1 (batch 128) and XL/1 (batch 64) bf16 training steps,
# Kiln next to PyTorch eager and torch.compile, with both sides' device memory, inside LIMIT seconds
# (bench/lightningdit.sh runs each side; this script orders them). Run on the GPU machine from the
# repository root (after `source .device/enter.sh`):
#   bash bench/lightningditTable.sh [LIMIT]        default 195; raw lines and logs in ${OUT:-/tmp}
# Why an order: torch.compile's first XL/1 step takes ~110-130 s (the critical path), and the six
# processes together need ~170 GB of device memory at their peaks (an H200 has 140; in one window all
# of them at once ran torch.compile XL/1 out of memory). So:
#  1. at t = 0, torch.compile XL/1 starts compiling, and B/1's three sides start in their own
#     invocation (they compile, then time one at a time);
#  2. when B/1 is done (its memory freed), Kiln XL/1 and eager XL/1 start;
#  3. torch.compile XL/1 times once phase 2 is ready (or over): no compile runs beside its timed steps.
# One KILN_GPU_LOCK for all: no two timed steps overlap, ever. B/1's timed steps do run while
# torch.compile XL/1 compiles on the CPU (the machine has 16 cores; B/1's sides wait for each other's
# compiles as bench/lightningdit.sh always does). TABLE_STRICT=1 makes B/1 wait for torch.compile XL/1
# to be ready too (no compile at all beside any timed step; ~25 s longer; B/1 is then not timed at all
# when torch.compile XL/1 fails before its first step ends).
# The environment's bench/lightningdit.sh options (KILN_VARIANT_SPECS, DIGEST_SPECS, KILN_REMAT ...)
# pass through to both phases; XL_ENV="VAR=value ..." is set for phase 2 only (Kiln and eager XL/1:
# e.g. XL_ENV="KILN_REMAT=off", or a variant of its own: XL_ENV="KILN_VARIANT_SPECS=lightningdit_xl:64
# KILN_VARIANT_ENV=KILN_REMAT=off"; memory: phase 2 beside torch.compile XL/1 holds ~120 GB).
set -uo pipefail
limit=${1:-195}
out=${OUT:-/tmp}
B1=lightningdit:128 XL=lightningdit_xl:64
t0=$(date +%s)
left() { echo $((limit - ($(date +%s) - t0))); }
export KILN_GPU_LOCK=/tmp/kiln-table-lock-$$
gate=/tmp/kiln-table-gate-$$ xlready=/tmp/kiln-table-xlready-$$  # xlready: torch.compile XL/1's ready directory
rm -rf "$KILN_GPU_LOCK" "$gate" "$xlready"
only() { env EAGER_SPECS=none KILN_DEFAULT_SPECS=none TORCH_COMPILE_SPECS=none KILN_TUNED_SPECS= KILN_GENERATED_SPECS= KILN_VARIANT_SPECS= "$@"; }
# 1. torch.compile XL/1 (its own invocation: its timed steps wait for the gate).
only TORCH_COMPILE_SPECS=$XL GPU_GATE="$gate" KILN_READY_DIR="$xlready" bash bench/lightningdit.sh "$((limit - 3))" "$XL" > "$out/table_compile_xl.log" 2>&1 &
cx=$!
# 1. B/1, all three sides (TABLE_STRICT=1: timed only after torch.compile XL/1's first step).
strict=(); [ -n "${TABLE_STRICT:-}" ] && strict=(GPU_GATE="$xlready/compile_${XL//:/_}")
env "${strict[@]}" TORCH_COMPILE_SPECS=$B1 EAGER_SPECS=$B1 KILN_DEFAULT_SPECS=$B1 bash bench/lightningdit.sh "$(($(left) - 40))" "$B1" > "$out/table_b1.log" 2>&1
echo "B/1 done after $(($(date +%s) - t0)) s" >&2
# 2. Kiln and eager XL/1; their go opens torch.compile XL/1's gate.
# shellcheck disable=SC2086
env ${XL_ENV:-} TORCH_COMPILE_SPECS=none EAGER_SPECS=$XL KILN_DEFAULT_SPECS=$XL KILN_GO_ALSO="$gate" bash bench/lightningdit.sh "$(($(left) - 3))" "$XL" > "$out/table_xl.log" 2>&1
touch "$gate"
echo "XL/1 Kiln and eager done after $(($(date +%s) - t0)) s" >&2
wait "$cx"
echo "torch.compile XL/1 done after $(($(date +%s) - t0)) s" >&2
rm -rf "$KILN_GPU_LOCK" "$gate" "$xlready"
KILN_TABLE_ONLY=1 bash bench/lightningdit.sh 0 "$B1" "$XL"
