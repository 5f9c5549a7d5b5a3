#!/usr/bin/env bash
# UCSD Ped2 on a CPU, at reduced and stated budgets (the paper budgets need a GPU:
# `oneclass reproduce lsa --table "Table 2"` etc. run them). Each budget is part of the run's
# identity (its options), so these runs never answer for a full-budget one.
#   bash scripts/ped2_cpu.sh [seeds] [results]
set -euo pipefail
SEEDS=${1:-0}
RESULTS=${2:-results}
DATA=${ONECLASS_DATA:-../shared/datasets}
run() { .venv/bin/oneclass evaluate --dataset ped2 --data-root "$DATA" --seeds "$SEEDS" --results "$RESULTS" \
          --device cpu --quiet "$@"; }
# ALOCC (paper widths, 30×30 patches): 15,000 training patches drawn from all normal frames, 3 epochs
run --method alocc --epochs 3 --option max_train_samples=15000
# LSA (8×32×32 patches of 16-frame windows): 5,520 patches (8 windows' worth), 4 epochs in batches
# of 64 (the paper's 2,760 would make this budget 8 steps); test windows every 16 frames instead of
# every frame (each frame still in one or two windows)
run --method lsa --epochs 4 --option max_train_samples=5520 --option test_stride=16 --option batch_size=64
# OLED (30×30 patches padded to 32): 12,000 training patches, 3 epochs; label-free (the epoch
# with the lowest validation reconstruction loss) and, separately named, paper-style (the epoch
# with the best AUROC on 150 normal + 150 anomalous patches, the latter from the test clips)
run --method oled --epochs 3 --option max_train_samples=12000
run --method oled --epochs 3 --option max_train_samples=12000 --option select=val_auroc
