"""The quickstart: fit on one digit of the embedded MNIST subset, score every held-out digit,
print AUROC and the time taken, save the model, a ROC curve and a score histogram."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import RocCurveDisplay  # noqa: E402

import torch  # noqa: E402

from . import metrics, protocols  # noqa: E402
from .detector import cpu_name, versions  # noqa: E402
from .fileio import write_json  # noqa: E402
from .data import embedded  # noqa: E402
from .registry import create  # noqa: E402


def run_demo(method: str = "dae", digit: int = 8, epochs: int = 15, device: str = "auto",
             out: Path = Path("demo-output"), echo: Callable[[str], None] = print) -> dict[str, Any]:
    load_before = os.getloadavg()[0]  # other work on this machine slows the timings below
    t0 = time.perf_counter()
    train, test = embedded()
    split = protocols.standard(train, test, digit, seed=0)
    echo(f"embedded MNIST subset: normal digit {digit}; {len(split.train)} training and {len(split.val)} "
         f"validation images of it; {len(split.test)} test images ({int(split.test_labels.sum())} of other digits)")
    det = create(method, "mnist", seed=0, device=device)
    neural = "epochs" in det.config
    if neural:  # 450 training images: smaller batches and a larger step than the
        # full-MNIST preset give enough progress in a few epochs
        det = create(method, "mnist", epochs=epochs, seed=0, device=device, batch_size=64, lr=1e-3)
    det.fit(split.train.images, split.val.images, **({"progress": False} if neural else {}))
    det.set_threshold(split.val.images, quantile=0.95)
    fit_seconds = time.perf_counter() - t0
    scores = det.score_samples(split.test.images)
    auroc = metrics.auroc(split.test_labels, scores)
    predicted = det.predict(split.test.images)
    out.mkdir(parents=True, exist_ok=True)
    det.save(out / f"{method}-digit{digit}.oneclass")

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    RocCurveDisplay.from_predictions(split.test_labels, scores, ax=ax, name=f"{method} (digit {digit} normal)")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set_title("ROC on the embedded MNIST test subset")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(scores.min(), np.quantile(scores, 0.995), 60)
    ax.hist(scores[split.test_labels == 0], bins=bins, alpha=0.6, density=True, label=f"digit {digit} (normal)")
    ax.hist(scores[split.test_labels == 1], bins=bins, alpha=0.6, density=True, label="other digits (novel)")
    ax.axvline(det.threshold, c="k", ls="--", label="threshold (validation q95)")
    ax.set_xlabel(f"novelty score ({det.headline})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "score_histogram.png", dpi=120)
    plt.close(fig)
    total = time.perf_counter() - t0
    flagged = float(predicted[split.test_labels == 1].mean())
    false_alarms = float(predicted[split.test_labels == 0].mean())
    echo(f"{method}: AUROC {auroc:.4f}; at the threshold {100 * flagged:.1f}% of novel digits flagged, "
         f"{100 * false_alarms:.1f}% false alarms; fit {fit_seconds:.1f}s, total {total:.1f}s on {det.device}")
    summary = {"method": method, "digit": digit, "epochs": det.config.get("epochs"), "seed": 0,
               "auroc": auroc, "novel_flagged": flagged, "false_alarms": false_alarms,
               "fit_seconds": fit_seconds, "total_seconds": total, "device": str(det.device),
               "cpu": cpu_name(), "cpus": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "cpu_load_1min_before": round(load_before, 2),
               "versions": versions(),
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(out / "summary.json", summary)
    echo(f"wrote {out}/roc.png, {out}/score_histogram.png, {out}/summary.json and the model "
         f"{out}/{method}-digit{digit}.oneclass")
    return summary
