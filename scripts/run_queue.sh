#!/usr/bin/env bash
# Run a queue of `oneclass evaluate` tasks, P at a time, sharing one GPU (or the CPU).
# Each line of TASKS is the argument list of one evaluate call (say one class of one method),
# in priority order. Every run is cached under RESULTS, so the queue can be cut short and
# started again: finished runs are skipped.
#   scripts/run_queue.sh TASKS [DATA_ROOT] [RESULTS] [DEVICE] [PARALLEL] [TIME_LIMIT_S]
set -u
TASKS=$1
DATA=${2:-${ONECLASS_DATA:-../shared/datasets}}
RESULTS=${3:-results}
DEVICE=${4:-auto}
PARALLEL=${5:-8}
LIMIT=${6:-100000}
ONECLASS=${ONECLASS:-oneclass}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RESULTS/logs"
# decode / extract each dataset once before the parallel jobs share the cache
python3 -c "import oneclass,sys; [oneclass.datasets.load(n, sys.argv[1]) for n in ('mnist','cifar10')]" "$DATA"
deadline=$(( $(date +%s) + LIMIT ))
grep -v '^\s*\(#\|$\)' "$TASKS" | while read -r line; do echo "$line"; done |
  DATA=$DATA RESULTS=$RESULTS DEVICE=$DEVICE ONECLASS=$ONECLASS DEADLINE=$deadline \
  xargs -P "$PARALLEL" -I{} bash -c '
    left=$(( DEADLINE - $(date +%s) )); [ $left -gt 20 ] || exit 0
    name=$(echo "{}" | tr -c "a-zA-Z0-9=.,-" "_" | cut -c1-120)
    timeout $left $ONECLASS evaluate --data-root "$DATA" --results "$RESULTS" --device "$DEVICE" --quiet {} \
      >> "$RESULTS/logs/$name.log" 2>&1 || echo "task failed or cut: {}" >&2'
