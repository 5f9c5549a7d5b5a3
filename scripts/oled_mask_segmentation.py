"""OLED Table 5: how well the mask generator's activation map finds the digit.

Trains OLED on one MNIST digit (MemAE protocol split, default digit 8), then for its test inliers
and outliers computes the pixel-level AUROC of MG's activation map A against the digit's pixels
(label 1 where the image is non-zero), averaged over images.

    python scripts/oled_mask_segmentation.py --data-root ../shared/datasets --epochs 15 --out results/oled_mask_segmentation.json
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import oneclass
from oneclass.detector import versions
from oneclass.fileio import write_json


def pixel_auroc(maps: np.ndarray, images: np.ndarray) -> float:
    """Mean over images of the AUROC of the activation map against the image's non-zero pixels."""
    values = []
    for a, img in zip(maps, images):
        labels = (img.reshape(-1) > 0).astype(int)
        if 0 < labels.sum() < labels.size:
            values.append(oneclass.metrics.auroc(labels, a.reshape(-1)))
    return float(np.mean(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--digit", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--option", action="append", default=[], help="method option key=value")
    ap.add_argument("--out", default="results/oled_mask_segmentation.json")
    args = ap.parse_args()
    options = {k: float(v) if v.replace(".", "", 1).replace("e-", "", 1).isdigit() else v
               for k, v in (o.split("=", 1) for o in args.option)}
    train, test = oneclass.datasets.load("mnist", args.data_root)
    split = oneclass.protocols.memae(train, test, args.digit, seed=args.seed)
    det = oneclass.create("oled", "mnist", epochs=args.epochs, seed=args.seed, device=args.device, **options)
    t0 = time.perf_counter()
    det.fit(split.train.images, split.val.images, progress=False)
    seconds = time.perf_counter() - t0
    images = split.test.images[:, 0].numpy()
    maps = det.activation_map(split.test.images)
    inl, out = split.test_labels == 0, split.test_labels == 1
    result = {"digit": args.digit, "epochs": args.epochs, "seed": args.seed, "device": str(det.device),
              "config": det.config, "versions": versions(), "train_seconds": seconds,
              "pixel_auroc_inliers": pixel_auroc(maps[inl], images[inl]),
              "pixel_auroc_outliers": pixel_auroc(maps[out], images[out]),
              "paper": {"inliers": 0.8499, "outliers": 0.8472, "source": "Jewell et al. WACV 2022, Table 5"},
              "image_auroc": {k: oneclass.metrics.auroc(split.test_labels, v)
                              for k, v in det.score_components(split.test.images).items()}}
    write_json(args.out, result)
    print({k: result[k] for k in ("pixel_auroc_inliers", "pixel_auroc_outliers", "image_auroc", "train_seconds")})


if __name__ == "__main__":
    main()
