#!/usr/bin/env bash
# Image and pixel AUROC of every method with anomaly maps on the example folder in the MVTec AD
# layout (`oneclass.data.mvtec.write_example`: 60 good training parts, 8 good and 8 scratched
# test parts with masks), one budget for all: 30 epochs in batches of 16, CPU.
#   bash scripts/mvtec_example.sh [seeds] [results]
set -euo pipefail
SEEDS=${1:-0}
RESULTS=${2:-results}
ROOT=${MVTEC_EXAMPLE_ROOT:-/tmp/oneclass-mvtec-example}
PY=.venv/bin/python
[ -d "$ROOT/mvtec/widget" ] || $PY -c "from oneclass.data.mvtec import write_example; write_example('$ROOT')"
for method in dae lsa alocc oled cae attn-entropy vae memae pixel-cnn ganomaly anogan; do
  .venv/bin/oneclass evaluate --method "$method" --dataset mvtec --data-root "$ROOT" --seeds "$SEEDS" \
    --epochs 30 --option batch_size=16 --device cpu --results "$RESULTS" --quiet
done
