"""What a run's test AUROC did epoch by epoch, from runs made with `evaluate --watch-test`.

Per run and component: the AUROC of the run's own epoch choice (its metrics), the last epoch's,
and the best over all epochs with its epoch, which is what a code that keeps the epoch with the
best *test* AUROC would report (Skip-GANomaly's public training loop does; the attention AE builds
on it). That column is a diagnosis of a paper's number, never a result of ours: it chose on test
labels. Means over the classes of each component close the table.

`--by-validation QUANTITY` adds the epoch another *label-free* rule would have kept: the first
epoch of lowest validation QUANTITY in the run's epoch log (inliers of the training split only,
e.g. the attention AE's `con`, its L1 reconstruction), and that epoch's test AUROC: what
`--option select=QUANTITY` gives, read from runs trained under another rule. (A watched score that
adds scaled terms, the attention AE's `a`, is scaled over the watched set itself, the paper's eq. 8,
where the run's own metric uses the validation inliers' statistics: the two can differ in the third
or fourth decimal; a single component's AUROC is the same either way.)

    python scripts/watch_table.py results/checks/attn-mse > results/checks/attn-mse/watch.md
    python scripts/watch_table.py results/checks/attn-mse --by-validation con
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from oneclass.evaluation import read_log

Row = tuple  # (class, seed, component, run's epoch, last, best, its epoch[, by validation, its epoch])


def validation_epoch(path: Path, quantity: str) -> int:
    """The first epoch of lowest validation `quantity` in the run's epoch log (the trainer's rule)."""
    log = [e for e in read_log(path) if "epoch" in e]
    values = [e.get("val", {}).get(quantity) for e in log]
    if not log or any(v is None for v in values):
        raise SystemExit(f"{path}: its epoch log has no validation {quantity!r} for every epoch")
    return log[int(np.argmin(values))]["epoch"]


def rows(folder: Path, by_validation: str | None = None) -> list[Row]:
    """(class, seed, component, AUROC of the run's epoch, last epoch's, best over epochs, its epoch),
    and with `by_validation` the AUROC of the epoch of lowest validation loss and that epoch."""
    out = []
    for path in sorted(folder.rglob("class*_seed*.json")):
        run = json.loads(path.read_text())
        watched = run.get("watched_test_auroc")
        if watched is None:
            continue
        chosen = validation_epoch(path, by_validation) if by_validation else None
        for name, values in watched["by_epoch"].items():
            at_epoch = dict(zip(watched["epochs"], values))
            seen = [(v, e) for e, v in at_epoch.items() if v is not None]
            best, at = max(seen, key=lambda ve: (ve[0], -ve[1]))
            row = (run["normal_class"], run["seed"], name, run["metrics"][name]["auroc"], seen[-1][0], best, at)
            if chosen is not None:
                if at_epoch.get(chosen) is None:
                    raise SystemExit(f"{path}: no watched test AUROC of {name} at epoch {chosen}")
                row += (at_epoch[chosen], chosen)
            out.append(row)
    return out


def table(found: list[Row], by_validation: str | None = None) -> str:
    head = "| class | seed | component | AUROC (run's epoch) | last epoch | best epoch on test labels (epoch) |"
    if by_validation:
        head += f" lowest validation {by_validation}, label-free (epoch) |"
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for r in found:
        cells = [str(r[0]), str(r[1]), r[2], f"{r[3]:.4f}", f"{r[4]:.4f}", f"{r[5]:.4f} ({r[6]})"]
        cells += [f"{r[7]:.4f} ({r[8]})"] if by_validation else []
        lines.append("| " + " | ".join(cells) + " |")
    for name in dict.fromkeys(r[2] for r in found):
        mine = [r for r in found if r[2] == name]
        means = [float(np.mean([r[k] for r in mine])) for k in ((3, 4, 5, 7) if by_validation else (3, 4, 5))]
        lines.append(f"| mean of {len(mine)} | | {name} | " + " | ".join(f"{m:.4f}" for m in means) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a results folder of runs made with --watch-test")
    parser.add_argument("--by-validation", metavar="QUANTITY", default=None,
                        help="add the epoch of lowest validation QUANTITY (label-free) and its test AUROC")
    args = parser.parse_args()
    found = rows(args.folder, args.by_validation)
    if not found:
        raise SystemExit(f"no run with a watched test AUROC under {args.folder}")
    print(table(found, args.by_validation))


if __name__ == "__main__":
    main()
