"""What a test set that reuses training images adds to AUROC (issue 17).

OLED's official MNIST scripts test each digit on inliers of which 62 % (61.7-63.1 %) are images that digit's
model trained on (digits 1-9; `results/anchors/oled-official-split-check.json`, written by
`scripts/anchors/oled_split_check.py`). This trains one model per (method, digit, seed) on
oneclass's own MemAE-protocol split and scores it twice: on the clean test set, and on the same
test set with that share of its inliers (the official count for the digit) swapped for images the
model trained on, drawn with the seed; the outliers stay. The difference is what the official
split adds to the method's AUROC, measured on the method's own scores. Nothing here chooses a
setting: the model and its epochs are those of the method's preset (or `--epochs`, recorded).

    python scripts/leak_check.py --methods memae --classes 1,2,3,4,5,6,7,8,9 --seeds 0 \
        --data-root ../shared/datasets --out results/checks/split-leak

One JSON per run, `<out>/<method>__e<epochs>/class<d>_seed<s>.json`, written atomically; a run
with its JSON is skipped, so a cut-off sweep resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import oneclass
from oneclass import metrics, protocols
from oneclass.data import load
from oneclass.detector import cpu_name, versions
from oneclass.evaluation import parse_numbers
from oneclass.fileio import write_json

ROOT = Path(__file__).resolve().parents[1]
SPLIT_CHECK = ROOT / "results" / "anchors" / "oled-official-split-check.json"


def official_shares(path: Path = SPLIT_CHECK) -> dict[int, float]:
    """Per digit, the share of the official test inliers that its model trained on."""
    rows = json.loads(path.read_text())["test"]
    return {int(r["digit"]): r["test_inliers_trained_on"] / r["test_inliers"] for r in rows}


def swap_in_training_images(test_images: torch.Tensor, labels: np.ndarray, train_images: torch.Tensor,
                            share: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """The test set with round(share × inliers) of its inliers replaced by training images (each
    used once), positions and images drawn with `seed`; labels and outliers unchanged. Returns the
    images and the positions that now hold a training image."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    inliers = np.flatnonzero(labels == 0)
    k = int(round(share * len(inliers)))
    if k > len(train_images):
        raise ValueError(f"{k} inliers to swap but only {len(train_images)} training images")
    rng = np.random.default_rng([seed, 4099])
    where = np.sort(rng.choice(inliers, size=k, replace=False))
    which = rng.choice(len(train_images), size=k, replace=False)
    leaky = test_images.clone()
    leaky[torch.as_tensor(where, dtype=torch.long)] = train_images[torch.as_tensor(which, dtype=torch.long)]
    return leaky, where


def run_one(method: str, digit: int, seed: int, epochs: int | None, share: float, device: str,
            data: tuple) -> dict:
    train, test = data
    split = protocols.make("memae", train, test, digit, seed)
    det = oneclass.create(method, "mnist", epochs=epochs, seed=seed, device=device)
    t0 = time.perf_counter()
    det.fit(split.train.images, split.val.images, progress=False)
    train_seconds = time.perf_counter() - t0
    leaky, where = swap_in_training_images(split.test.images, split.test_labels, split.train.images, share, seed)
    clean_scores, leaky_scores = det.score_components(split.test.images), det.score_components(leaky)
    comps = {}
    for name in clean_scores:
        clean = metrics.auroc(split.test_labels, clean_scores[name])
        dirty = metrics.auroc(split.test_labels, leaky_scores[name])
        comps[name] = {"auroc_clean": clean, "auroc_with_training_images": dirty, "difference": dirty - clean}
    return {
        "what": "AUROC on a clean test set and on the same set with a share of its inliers swapped for "
                "training images (the share OLED's official MNIST scripts test on), one trained model",
        "method": method, "preset": "mnist", "epochs": det.config.get("epochs"), "seed": seed, "normal_class": digit,
        "protocol_info": split.info, "share_swapped": share, "inliers_swapped": int(len(where)),
        "test_inliers": int((split.test_labels == 0).sum()), "test_outliers": int(split.test_labels.sum()),
        "share_from": str(SPLIT_CHECK.relative_to(ROOT)), "headline": det.headline, "metrics": comps,
        "train_seconds": train_seconds, "device": str(det.device), "host_cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(), "versions": versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="memae")
    ap.add_argument("--classes", default="1,2,3,4,5,6,7,8,9", help="digits (0's official test set is clean)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=None, help="instead of the preset's (recorded in each file)")
    ap.add_argument("--share", type=float, default=None,
                    help="swap this share of the inliers for every digit instead of the official count")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default="results/checks/split-leak")
    args = ap.parse_args()
    shares = official_shares()
    data = load("mnist", args.data_root)
    for method in args.methods.split(","):
        epochs = args.epochs or oneclass.create(method, "mnist", device="cpu").config.get("epochs")
        for seed in parse_numbers(args.seeds, int, "--seeds"):
            for digit in parse_numbers(args.classes, int, "--classes"):
                path = Path(args.out) / f"{method}__e{epochs}" / f"class{digit}_seed{seed}.json"
                if path.exists():
                    print(f"  = {path} (done)")
                    continue
                share = args.share if args.share is not None else shares[digit]
                record = run_one(method, digit, seed, epochs, share, args.device, data)
                write_json(path, record)
                m = record["metrics"][record["headline"]]
                print(f"  -> {path}: {record['headline']} AUROC clean {m['auroc_clean']:.4f}, with "
                      f"{record['inliers_swapped']} training images {m['auroc_with_training_images']:.4f} "
                      f"({m['difference']:+.4f})", flush=True)


if __name__ == "__main__":
    main()
