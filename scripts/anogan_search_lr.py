"""AnoGAN's latent-search step size, chosen on normal validation images only (no anomaly, no test
image): trains the GAN on one class's training split, then runs the search with each step size
and records the mean search loss L(z) after each number of steps. Writes one JSON.

    python scripts/anogan_search_lr.py --digit 0 --epochs 3 --out results/anogan_search_lr.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import oneclass
from oneclass.data import load as load_dataset
from oneclass.fileio import write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digit", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-samples", type=int, default=2000)
    ap.add_argument("--val-images", type=int, default=8)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lrs", default="0.01,0.03,0.1,0.3")
    ap.add_argument("--out", default="results/anogan_search_lr.json")
    args = ap.parse_args()
    root = os.environ.get("ONECLASS_DATA", "../shared/datasets")
    train, _ = load_dataset("mnist", root)
    normal = train.images[train.labels == args.digit]
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(normal), generator=gen)
    fit_x, val_x = normal[perm[:args.train_samples]], normal[perm[-args.val_images:]]  # disjoint
    det = oneclass.create("anogan", "mnist", epochs=args.epochs, seed=0, device="cpu")
    t0 = time.time()
    det.fit(fit_x, progress=False)
    fit_s = time.time() - t0
    checkpoints = sorted({s for s in (10, 25, 50, 100, 200, args.steps) if s <= args.steps})
    rows = []
    for lr in [float(v) for v in args.lrs.split(",")]:
        losses, t0 = {}, time.time()
        for steps in checkpoints:
            det.config.update(search_lr=lr, search_steps=steps)
            losses[steps] = float(det._raw(det.prepare(val_x))["a"].mean())
        rows.append({"search_lr": lr, "mean_loss_after_steps": losses, "seconds": round(time.time() - t0, 1)})
        print(lr, losses, flush=True)
    best = min(rows, key=lambda r: r["mean_loss_after_steps"][args.steps])["search_lr"]
    record = {"what": "AnoGAN latent-search step size: mean L(z) = 0.9·R + 0.1·D over normal validation images "
                      "(held out from the class's training split; no anomaly, no test image)",
              "digit": args.digit, "gan_epochs": args.epochs, "gan_train_samples": args.train_samples,
              "val_images": args.val_images, "fit_seconds": round(fit_s, 1), "device": "cpu",
              "torch_threads": torch.get_num_threads(), "rows": rows, "lowest_after_all_steps": best,
              "versions": oneclass.detector.versions(), "measured_at": time.strftime("%Y-%m-%dT%H:%M")}
    write_text(args.out, json.dumps(record, indent=1) + "\n")
    print("lowest:", best)


if __name__ == "__main__":
    main()
