"""What a run's test AUROC did epoch by epoch, from runs made with `evaluate --watch-test`.

Per run and component: the AUROC of the run's own epoch choice (its metrics), the last epoch's,
and the best over all epochs with its epoch, which is what a code that keeps the epoch with the
best *test* AUROC would report (Skip-GANomaly's public training loop does; the attention AE builds
on it). That column is a diagnosis of a paper's number, never a result of ours: it chose on test
labels. Means over the classes of each component close the table.

    python scripts/watch_table.py results/checks/attn-mse > results/checks/attn-mse/watch.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def rows(folder: Path) -> list[tuple[int, int, str, float, float, float, int]]:
    """(class, seed, component, AUROC of the run's epoch, last epoch's, best over epochs, its epoch)."""
    out = []
    for path in sorted(folder.rglob("class*_seed*.json")):
        run = json.loads(path.read_text())
        watched = run.get("watched_test_auroc")
        if watched is None:
            continue
        for name, values in watched["by_epoch"].items():
            seen = [(v, e) for v, e in zip(values, watched["epochs"]) if v is not None]
            best, at = max(seen, key=lambda ve: (ve[0], -ve[1]))
            out.append((run["normal_class"], run["seed"], name, run["metrics"][name]["auroc"], seen[-1][0], best, at))
    return out


def table(found: list[tuple[int, int, str, float, float, float, int]]) -> str:
    lines = ["| class | seed | component | AUROC (run's epoch) | last epoch | best epoch on test labels (epoch) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {c} | {s} | {n} | {a:.4f} | {last:.4f} | {b:.4f} ({e}) |" for c, s, n, a, last, b, e in found]
    for name in dict.fromkeys(r[2] for r in found):
        mine = [r for r in found if r[2] == name]
        means = [float(np.mean([r[k] for r in mine])) for k in (3, 4, 5)]
        lines.append(f"| mean of {len(mine)} | | {name} | {means[0]:.4f} | {means[1]:.4f} | {means[2]:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a results folder of runs made with --watch-test")
    folder = parser.parse_args().folder
    found = rows(folder)
    if not found:
        raise SystemExit(f"no run with a watched test AUROC under {folder}")
    print(table(found))


if __name__ == "__main__":
    main()
