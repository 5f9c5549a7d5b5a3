"""What a preset's batch size does to a fit on a small folder: a DAE at its `mnist` preset (batches
of 256, lr 1e-4, 30 epochs, set for the ~5,400 training images of one MNIST class) fitted on the
first N normal training images of one digit (10 % of them held out, as `fit` does), scored on the
whole MNIST test split. Per setting: the optimisation steps, whether `fit` warned
(the `UndertrainingWarning` it keeps in `fit_info`), the AUROC and the seconds. It shows why the warning exists and that its
remedy works; it chooses nothing.

    python scripts/small_set_budget.py --out results/checks/small-set-budget/digit0_seed0.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

import oneclass
from oneclass import metrics, protocols
from oneclass.data import load as load_dataset
from oneclass.fileio import write_text

# (training images before the 10 % hold-out, options): the preset on ever smaller sets, then the
# two remedies the warning names on the smallest (as many steps as the preset makes on its set)
SETTINGS = [(6000, {}), (3000, {}), (2000, {}), (1000, {}), (200, {}),
            (200, {"epochs": 660}), (200, {"epochs": 110, "batch_size": 32})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digit", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=os.environ.get("ONECLASS_DATA", "../shared/datasets"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    train, test = load_dataset("mnist", args.data_root)
    split = protocols.make("standard", train, test, args.digit, args.seed)
    # the digit's training images (train and validation parts of the standard split), in a seeded order
    pool = torch.cat([split.train.images, split.val.images])
    pool = pool[torch.from_numpy(np.random.default_rng(args.seed).permutation(len(pool)))]
    rows = []
    for n, options in SETTINGS:
        det = oneclass.create("dae", "mnist", seed=args.seed, device="cpu", **options)
        t0 = time.time()
        det.fit(pool[:n], progress=False)  # holds out a seeded 10 % as `oneclass fit` does
        fit_s = time.time() - t0
        scores = det.score_samples(split.test.images)
        n_train = det.fit_info["n_train"]
        row = {"images": min(n, len(pool)), "n_train": n_train, "options": options,
               "steps": det.fit_info["steps"], "warned": det.fit_info["undertrained"] is not None,
               "auroc": metrics.auroc(split.test_labels, scores), "kept_epoch": det.fit_info["best_epoch"],
               "fit_seconds": round(fit_s, 1)}
        rows.append(row)
        print(row, flush=True)
    record = {"what": "DAE at its mnist preset fitted on the first N training images of one digit (fit's own 10 % "
                      "hold-out), scored on the whole test split: AUROC against optimisation steps",
              "method": "dae", "preset": "mnist", "dataset": "mnist", "normal_class": args.digit, "seed": args.seed,
              "test_images": int(len(split.test_labels)), "device": "cpu", "torch_threads": torch.get_num_threads(),
              "rows": rows, "versions": oneclass.detector.versions(), "measured_at": time.strftime("%Y-%m-%dT%H:%M")}
    write_text(args.out, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
