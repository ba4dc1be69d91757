# Sourced by bench/fae_dit_swap_gpu.sh and bench/fae_fae_swap_gpu.sh (GPU jobs of issue 13): with R (runs), L (logs),
# OUT and END (a deadline in epoch seconds, 0: none) set, makes R, L and $OUT/samples and defines
#   el   seconds since sourcing;  left  seconds to END;  cap N  N capped at what is left;
#   run NAME LIMIT CMD...  one command under timeout, its log in $L/NAME.log, "NAME rc seconds" in $OUT/times.txt.
rm -rf "$R"; mkdir -p "$R" "$L" "$OUT/samples"
export PYTHONUNBUFFERED=1
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
left() { [ "$END" -gt 0 ] && echo $(( END - $(date +%s) )) || echo 100000; }
cap() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
run() {
  local name=$1 lim t0 rc; lim=$(cap "$2"); shift 2; t0=$(date +%s)
  timeout -k 2 "$lim" "$@" > "$L/$name.log" 2>&1; rc=$?
  echo "$name $rc $(( $(date +%s) - t0 ))" >> "$OUT/times.txt"; echo "[$(el)s] $name rc=$rc"; return $rc
}
