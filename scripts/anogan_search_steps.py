"""How AnoGAN's score depends on the latent search's step budget Γ: trains the GAN as `evaluate`
does (standard protocol, the preset's 20 epochs, one digit and seed), then searches a stratified
subset of that run's test images once for the paper's Γ = 500 steps, recording the score after
fewer steps on the way (the search is deterministic, so the score after k of its steps is a k-step
search's score). Writes one JSON: per budget the AUROC on the subset, the rank correlation with the
500-step scores, and the seconds. It measures a reduced budget's fidelity; it chooses nothing.

    python scripts/anogan_search_steps.py --digit 0 --out results/anogan_search_steps/digit0.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from scipy.stats import spearmanr

import oneclass
from oneclass import metrics, protocols
from oneclass.data import load as load_dataset
from oneclass.fileio import write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digit", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="GAN epochs (default: the preset's)")
    ap.add_argument("--test-normal", type=int, default=100)
    ap.add_argument("--test-novel", type=int, default=900)
    ap.add_argument("--steps", default="10,25,50,100,200,500")
    ap.add_argument("--train-limit", type=int, default=None, help="train on the first N images only (a quick try)")
    ap.add_argument("--data-root", default=os.environ.get("ONECLASS_DATA", "../shared/datasets"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    steps = sorted(int(s) for s in args.steps.split(","))
    train, test = load_dataset("mnist", args.data_root)
    split = protocols.make("standard", train, test, args.digit, args.seed)
    det = oneclass.create("anogan", "mnist", epochs=args.epochs, seed=args.seed, device="cpu")
    # fit searches its validation images for their scores, which this check does not use: one step
    det.config["search_steps"] = 1
    t0 = time.time()
    det.fit(split.train.images[:args.train_limit], split.val.images, progress=False)
    fit_s = time.time() - t0
    det.config["search_steps"] = steps[-1]

    rng = np.random.default_rng([args.seed, args.digit])
    labels = split.test_labels
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == 0), args.test_normal, replace=False),
                                   rng.choice(np.flatnonzero(labels == 1), args.test_novel, replace=False)]))
    images, y = det.prepare(split.test.images[torch.from_numpy(pick)]), labels[pick]  # 28×28 → the GAN's 32×32
    det.train_mode(False)
    after: dict[int, list[np.ndarray]] = {k: [] for k in steps}
    t0 = time.time()
    bs = det.score_batch_size
    for start in range(0, len(images), bs):
        out = det.search(det.inputs(images[start:start + bs]), record_at=steps)
        for k, a in out["a_after"].items():
            after[k].append(a.double().cpu().numpy())
        print(f"{min(start + bs, len(images))}/{len(images)} images, {time.time() - t0:.0f} s", flush=True)
    search_s = time.time() - t0
    scores = {k: np.concatenate(v) for k, v in after.items()}
    full = scores[steps[-1]]
    rows = [{"search_steps": k, "auroc": metrics.auroc(y, scores[k]),
             "spearman_with_full": float(spearmanr(scores[k], full).statistic),
             "mean_score": float(scores[k].mean()),
             "mean_relative_excess_over_full": float(np.mean(scores[k] / full - 1)),
             "search_seconds_estimated": round(search_s * k / steps[-1], 1)} for k in steps]
    record = {"train_limit": args.train_limit} if args.train_limit else {}
    record = {**record, "what": "AnoGAN score A(x) after k steps of the paper's 500-step latent search, on a stratified "
                      "subset of the standard protocol's test images (a reduced budget's fidelity; nothing chosen)",
              "dataset": "mnist", "protocol": "standard", "normal_class": args.digit, "seed": args.seed,
              "gan_epochs": det.config["epochs"], "fit_seconds": round(fit_s, 1),
              "test_images": {"normal": args.test_normal, "novel": args.test_novel, "of": int(len(labels))},
              "search_seconds": round(search_s, 1), "images_per_second_at_full": round(len(images) / search_s, 3),
              "device": "cpu", "torch_threads": torch.get_num_threads(), "rows": rows,
              "config": {k: det.config[k] for k in ("lam", "search_lr", "code", "width", "batch_size")},
              "versions": oneclass.detector.versions(), "measured_at": time.strftime("%Y-%m-%dT%H:%M")}
    write_text(args.out, json.dumps(record, indent=1) + "\n")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
