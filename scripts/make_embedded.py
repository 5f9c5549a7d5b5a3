"""Derive the embedded dataset `src/oneclass/data/mnist_embedded.npz` from the full MNIST.

Stratified and deterministic: for each digit, the first 500 training images and the first 200
test images in the files' original order. MNIST (LeCun, Cortes, Burges) is licensed CC BY-SA 3.0;
the derived subset is shared under the same licence.

    python scripts/make_embedded.py --data-root ../shared/datasets
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from oneclass import datasets
from oneclass.fileio import atomic_open

PER_CLASS = {"train": 500, "test": 200}
OUT = Path(__file__).resolve().parents[1] / "src" / "oneclass" / "data" / "mnist_embedded.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    train, test = datasets.load("mnist", args.data_root)
    arrays = {}
    for split, data in (("train", train), ("test", test)):
        labels = data.labels.numpy()
        keep = np.concatenate([np.flatnonzero(labels == c)[:PER_CLASS[split]] for c in range(10)])
        keep.sort()  # keep the original order, classes interleaved as in MNIST
        arrays[f"{split}_images"] = data.images[keep, 0].numpy()
        arrays[f"{split}_labels"] = labels[keep].astype(np.uint8)
        arrays[f"{split}_source_index"] = keep.astype(np.int32)  # index into the original split
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with atomic_open(args.out) as fh:
        fh.write(buf.getvalue())
    print(f"wrote {args.out}: {buf.tell() / 1e6:.2f} MB, "
          + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
