#!/usr/bin/env bash
# The short diagnostic sweeps quoted in results/README.md, on the embedded MNIST subset (CPU,
# seconds to minutes each). Every run is a cached result file under RESULTS like any other.
#   scripts/sweeps_embedded.sh [RESULTS]
set -eu
RESULTS=${1:-results}
ONECLASS=${ONECLASS:-oneclass}
ev() { $ONECLASS evaluate --dataset mnist-embedded --classes 0 --device cpu --results "$RESULTS" --quiet "$@"; }
# attention + entropy AE on digit 0, 8 epochs: input noise with the U-Net generator (the former
# default), then the plain AE generator and what changes it
for s in 0.1 0.5 1.0; do ev --method attn-entropy --epochs 8 --option skips=true --option noise_std=$s; done
ev --method attn-entropy --epochs 8 --option skips=false
ev --method attn-entropy --epochs 20 --option skips=false
ev --method attn-entropy --epochs 8 --option skips=false --option w_adv=0
ev --method attn-entropy --epochs 8 --option skips=false --option entropy=false
ev --method attn-entropy --epochs 8 --option skips=false --option lr=0.0002
# ALOCC on digit 0 after the batch-norm fix, 15 epochs
ev --method alocc --epochs 15
