"""Tables of finished runs beside the papers' values (Markdown and CSV)."""
from __future__ import annotations

import csv
import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OneClassError
from .evaluation import collect, config_changes, iter_groups
from .registry import create
from .fileio import write_text

PAPER_FILE = Path(__file__).with_name("paper_values.json")
_PAPER_DATASET = {"cifar10-jpeg": "cifar10", "cifar10": "cifar10", "mnist": "mnist"}


@lru_cache(maxsize=1)
def paper_values() -> dict[str, Any]:
    return json.loads(PAPER_FILE.read_text())


def paper_value(method: str, dataset: str, protocol: str, component: str,
                options: str = "{}") -> dict[str, Any] | None:
    """The paper's value for a run group; `options` is the group's sorted JSON options. Ablation
    options have their own entries ("method {options}"); options that only pick the epoch
    ("select") compare with the method's own values; other options have none."""
    ds = _PAPER_DATASET.get(dataset)
    if not ds:
        return None
    opts = json.loads(options) if options else {}
    key = method if not opts else f"{method} {options}"
    if key not in paper_values() and set(opts) - {"select"} <= _default_keys(method, json.dumps(opts, sort_keys=True)):
        key = method
    return paper_values().get(key, {}).get(ds, {}).get(protocol, {}).get(component)


@lru_cache(maxsize=None)
def _default_keys(method: str, options: str) -> set[str]:
    """Options whose value is the method's current default (say `skips=false` once that became
    the default): such a group is the method itself."""
    try:
        defaults = create(method, device="cpu").config
    except (OneClassError, ValueError, TypeError):
        return set()
    return {k for k, v in json.loads(options).items() if k in defaults and defaults[k] == v}


def stale_settings(run: dict[str, Any]) -> list[str]:
    """Where a finished run's stored config differs from what `evaluate` would run today."""
    try:
        now = create(run["method"], run.get("preset") or "mnist", device="cpu",
                     epochs=run["epochs"] if run["epochs"] != "na" else None,
                     **run.get("options", {})).config
    except (OneClassError, ValueError, TypeError):
        return []
    return config_changes(run.get("config", {}), now)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def group_table(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows (one per class, then the mean) and notes for one group of runs."""
    first = runs[0]
    method, dataset, protocol = first["method"], first["dataset"], first["protocol"]
    options = json.dumps(first.get("options", {}), sort_keys=True)
    components = list(first["metrics"])
    by_class: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by_class.setdefault(r["normal_class"], []).append(r)
    header = ["class"]
    for c in components:
        header.append(f"{c} AUROC")
        if paper_value(method, dataset, protocol, c, options):
            header.append(f"{c} paper")
    header += ["seeds"]
    rows, means = [], {c: [] for c in components}
    for cls in sorted(by_class):
        rs = by_class[cls]
        row = [f"{cls} ({rs[0].get('normal_class_name', cls)})"]
        for c in components:
            v = float(np.mean([r["metrics"][c]["auroc"] for r in rs]))
            means[c].append(v)
            row.append(_fmt(v))
            pv = paper_value(method, dataset, protocol, c, options)
            if pv:
                per = pv.get("per_class")
                row.append(_fmt(per[cls]) if per and cls < len(per) else "")
        row.append(",".join(str(r["seed"]) for r in rs))
        rows.append(row)
    mean_row = [f"mean ({len(by_class)} classes)"]
    notes = []
    for c in components:
        mean_row.append(_fmt(float(np.mean(means[c]))))
        pv = paper_value(method, dataset, protocol, c, options)
        if pv:
            mean_row.append(_fmt(pv["mean"], 4 if len(str(pv["mean"])) > 5 else 3))
            notes.append(f"{c}: {pv['source']}")
    mean_row.append("")
    rows.append(mean_row)
    return header, rows, notes


def _settings(runs: list[dict[str, Any]]) -> str:
    r = runs[0]
    devices = sorted({x.get("device_name", x["device"]) for x in runs})
    tr = [x["train_images_per_second"] for x in runs if x.get("train_images_per_second")]
    sc = [x["score_images_per_second"] for x in runs if x.get("score_images_per_second")]
    parts = [f"epochs {r['epochs']}", f"device {', '.join(devices)}", f"data {r.get('data_source', r['dataset'])}",
             f"headline `{r['headline']}`"]
    if r.get("options"):
        parts.append(f"options {r['options']}")
    if tr:
        parts.append(f"train {np.median(tr):.0f} img/s")
    if sc:
        parts.append(f"score {np.median(sc):.0f} img/s")
    parts.append(f"torch {r['versions']['torch']}")
    stale = stale_settings(r)
    if stale:
        parts.append(f"**ran with other settings than today's defaults**: {', '.join(stale)}")
    return "; ".join(parts)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fraction_table(runs: list[dict[str, Any]]) -> str:
    """ALOCC-style: F1 (best, at τ = 0.5 where defined, at the validation q95 threshold) and
    AUROC against the outlier fraction, averaged over the classes."""
    by_method: dict[str, dict[float, list[dict[str, Any]]]] = {}
    for r in runs:
        by_method.setdefault(r["method"], {}).setdefault(r["protocol_info"]["outlier_fraction"], []).append(r)
    out = []
    for method, fractions in sorted(by_method.items()):
        comps = list(next(iter(fractions.values()))[0]["metrics"])
        header = ["outlier fraction", "classes"]
        keys = []
        for c in comps:
            for key, label in (("f1_best", "F1 best"), ("f1_at_tau_0.5", "F1 τ=0.5"),
                               ("f1_at_val_q95", "F1 val-q95"), ("f1_best_normal", "F1⁺ best"),
                               ("f1_normal_at_tau_0.5", "F1⁺ τ=0.5"), ("auroc", "AUROC")):
                if key in next(iter(fractions.values()))[0]["metrics"][c]:
                    header.append(f"{c} {label}")
                    keys.append((c, key))
        rows = []
        for p in sorted(fractions):
            rs = fractions[p]
            rows.append([f"{p:g}", str(len({r['normal_class'] for r in rs}))]
                        + [_fmt(float(np.mean([r["metrics"][c][k] for r in rs]))) for c, k in keys])
        out.append(f"### {method}: F1 against the outlier fraction ({runs[0]['dataset']})\n\n"
                   f"F1 counts the novel class as positive, F1⁺ the normal (target) class; {_settings(runs)}\n\n"
                   + _markdown(header, rows))
    return "\n\n".join(out)


def report(results: str | Path, write: bool = True) -> str:
    """Markdown for every group of runs; with `write`, also `report.md` and `report.csv` in `results`."""
    runs = collect(results)
    if not runs:
        return f"no finished runs under {results}"
    sections = ["# oneclass results\n\nAUROC per normal class (label 1 = novel), mean over seeds; the papers' "
                "values beside ours where the paper reports that method, dataset and protocol."]
    csv_buf = io.StringIO()
    writer = csv.writer(csv_buf)
    writer.writerow(["method", "options", "dataset", "protocol", "outlier_fraction", "epochs", "normal_class",
                     "seed", "component", "auroc", "aupr", "eer", "f1_best", "paper_auroc_class", "paper_auroc_mean",
                     "device", "train_images_per_second", "score_images_per_second"])
    fraction_runs = []
    for key, group in sorted(iter_groups(runs).items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        method, options, dataset, protocol, fraction, epochs = key
        for r in group:
            for c, m in r["metrics"].items():
                pv = paper_value(method, dataset, protocol, c, options) or {}
                per = pv.get("per_class")
                writer.writerow([method, options, dataset, protocol, fraction if fraction is not None else "", epochs,
                                 r["normal_class"], r["seed"], c, m["auroc"], m["aupr"], m["eer"], m["f1_best"],
                                 per[r["normal_class"]] if per and r["normal_class"] < len(per) else "",
                                 pv.get("mean", ""), r.get("device_name", r["device"]),
                                 r.get("train_images_per_second", ""), r.get("score_images_per_second", "")])
        if fraction is not None:
            fraction_runs += group
            continue
        header, rows, notes = group_table(group)
        budget = f", {epochs} epochs" if epochs != "na" else ""
        title = f"## {method}{' ' + options if options != '{}' else ''} — {dataset}, {protocol} protocol{budget}"
        text = f"{title}\n\n{_settings(group)}\n\n{_markdown(header, rows)}"
        if notes:
            text += "\n\nPaper values: " + "; ".join(notes) + "."
        sections.append(text)
    if fraction_runs:
        sections.append("## outlier-fraction protocol\n\n" + fraction_table(fraction_runs))
    md = "\n\n".join(sections) + "\n"
    if write:
        write_text(Path(results) / "report.md", md)
        write_text(Path(results) / "report.csv", csv_buf.getvalue())
    return md
