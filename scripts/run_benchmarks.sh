#!/usr/bin/env bash
# Re-measure the LSA Table 1 rows that oneclass implements (DAE, LSA; MNIST and CIFAR-10), in
# parallel jobs that share one GPU. Every run is cached in $RESULTS, so the script can be
# stopped and started again; finished runs are skipped.
#   scripts/run_benchmarks.sh [DATA_ROOT] [RESULTS] [DEVICE] [TIME_LIMIT_S]
set -u
DATA=${1:-${ONECLASS_DATA:-../shared/datasets}}
RESULTS=${2:-results}
DEVICE=${3:-auto}
LIMIT=${4:-100000}
ONECLASS=${ONECLASS:-oneclass}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# decode / extract each dataset once before the parallel jobs share the cache
python3 -c "import oneclass,sys; [oneclass.datasets.load(n, sys.argv[1]) for n in ('mnist','cifar10')]" "$DATA"

job() {  # job NAME ARGS...: one evaluate in the background, its log beside the results
  local name=$1; shift
  mkdir -p "$RESULTS/logs"
  timeout "$LIMIT" $ONECLASS evaluate --data-root "$DATA" --results "$RESULTS" --device "$DEVICE" --quiet "$@" \
    > "$RESULTS/logs/$name.log" 2>&1 &
}
job dae-mnist-a   --method dae --dataset mnist --classes 0,1,2,3,4 --epochs 100
job dae-mnist-b   --method dae --dataset mnist --classes 5,6,7,8,9 --epochs 100
job lsa-mnist-a   --method lsa --dataset mnist --classes 0,1,2 --epochs 100
job lsa-mnist-b   --method lsa --dataset mnist --classes 3,4,5 --epochs 100
job lsa-mnist-c   --method lsa --dataset mnist --classes 6,7 --epochs 100
job lsa-mnist-d   --method lsa --dataset mnist --classes 8,9 --epochs 100
job lsa-cifar-a   --method lsa --dataset cifar10 --classes 0,1,2,3,4 --epochs 50
job lsa-cifar-b   --method lsa --dataset cifar10 --classes 5,6,7,8,9 --epochs 50
job dae-cifar-a   --method dae --dataset cifar10 --classes 0,1,2,3,4 --epochs 50
job dae-cifar-b   --method dae --dataset cifar10 --classes 5,6,7,8,9 --epochs 50
wait
