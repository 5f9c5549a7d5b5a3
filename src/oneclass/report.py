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
from .evaluation import collect, collect_anchors, config_changes, iter_groups
from .registry import create
from .fileio import write_text

PAPER_FILE = Path(__file__).with_name("paper_values.json")
_PAPER_DATASET = {"cifar10-jpeg": "cifar10", "cifar10": "cifar10", "mnist": "mnist", "ped2": "ped2"}


@lru_cache(maxsize=1)
def paper_values() -> dict[str, Any]:
    return json.loads(PAPER_FILE.read_text())


VIDEO_BUDGET = {"max_train_samples", "train_stride", "test_stride", "batch_size"}


def paper_value(method: str, dataset: str, protocol: str, component: str,
                options: str = "{}") -> dict[str, Any] | None:
    """The paper's value for a run group; `options` is the group's sorted JSON options. Ablation
    options have their own entries ("method {options}"); options that only pick the epoch
    ("select") or the settings a paper leaves unstated ("choose") compare with the method's own
    values; other options have none."""
    ds = _PAPER_DATASET.get(dataset)
    if not ds:
        return None
    opts = json.loads(options) if options else {}
    key = method if not opts else f"{method} {options}"
    # options that only pick the epoch, or (video) shrink the budget, compare with the paper's value
    same = {"select", "choose"} | (VIDEO_BUDGET if protocol == "video" else set())
    if key not in paper_values() and set(opts) - same <= _default_keys(method, json.dumps(opts, sort_keys=True)):
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


def _mean_std(values: list[float], digits: int = 3) -> str:
    """`mean` for one value, `mean ± std` (sample standard deviation) for several."""
    if not values:
        return ""
    if len(values) == 1:
        return _fmt(values[0], digits)
    std = float(np.std(values, ddof=1))
    # a spread below the last shown digit gets one more digit rather than reading as zero
    return f"{_fmt(float(np.mean(values)), digits)} ± {_fmt(std, digits if std >= 10 ** -digits or std == 0 else digits + 1)}"


def group_table(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows (one per class, then the mean over classes) and notes for one group of runs.
    With several seeds a cell is mean ± standard deviation over seeds; the mean row's spread is
    that of the per-seed class means, over the seeds that have every class. A component that only
    some runs have (one added to a method after its first runs) is shown over those runs, with
    their seeds named in the cell."""
    first = runs[0]
    method, dataset, protocol = first["method"], first["dataset"], first["protocol"]
    options = json.dumps(first.get("options", {}), sort_keys=True)
    components = list(dict.fromkeys(c for r in runs for c in r["metrics"]))
    by_class: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by_class.setdefault(r["normal_class"], []).append(r)
    header = ["class"]
    for c in components:
        header.append(f"{c} AUROC")
        if paper_value(method, dataset, protocol, c, options):
            header.append(f"{c} paper")
    # pixel AUROC of the headline map, where the test images have defect masks (MVTec AD layout)
    pixel = lambda r: (r.get("pixel_level") or {}).get("pixel_auroc")  # noqa: E731
    with_pixels = any(pixel(r) is not None for r in runs)
    if with_pixels:
        header.append(f"pixel AUROC ({next(r['pixel_level']['map'] for r in runs if pixel(r) is not None)} map)")
    chosen = any("chosen" in r for r in runs)  # a choice (`--choose`): what each class kept, and on what
    if chosen:
        header.append("chosen (selection AUROC)")
    header += ["seeds"]
    rows = []
    for cls in sorted(by_class):
        rs = sorted(by_class[cls], key=lambda r: r["seed"])
        row = [f"{cls} ({rs[0].get('normal_class_name', cls)})"]
        for c in components:
            row.append(_auroc_over_runs_with(c, rs))
            pv = paper_value(method, dataset, protocol, c, options)
            if pv:
                per = pv.get("per_class")
                row.append(_fmt(per[cls]) if per and cls < len(per) else "")
        if with_pixels:
            values = [pixel(r) for r in rs if pixel(r) is not None]
            row.append(_mean_std(values) if values else "–")
        if chosen:
            row.append("; ".join(_chosen(r) for r in rs))
        row.append(",".join(str(r["seed"]) for r in rs))
        rows.append(row)
    seeds = sorted({r["seed"] for r in runs})
    complete = [s for s in seeds if all(any(r["seed"] == s for r in rs) for rs in by_class.values())]
    mean_row = [f"mean ({len(by_class)} classes)"]
    notes = []
    for c in components:
        has = [r for r in runs if c in r["metrics"]]
        complete_c = [s for s in complete if all(any(r["seed"] == s for r in rs if c in r["metrics"])
                                                 for rs in by_class.values())]
        if complete_c:
            per_seed = [float(np.mean([r["metrics"][c]["auroc"] for r in has if r["seed"] == s])) for s in complete_c]
            cell = _mean_std(per_seed)
            mean_row.append(cell if complete_c == complete else f"{cell} (seed{'s' * (len(complete_c) > 1)} "
                            f"{','.join(map(str, complete_c))})")
        elif complete or any(not any(c in r["metrics"] for r in rs) for rs in by_class.values()):
            mean_row.append("–")  # no seed with every class has it, or a class never has it
        else:  # no seed has every class: the mean of the class means
            mean_row.append(_fmt(float(np.mean([np.mean([r["metrics"][c]["auroc"] for r in rs if c in r["metrics"]])
                                                for rs in by_class.values()]))))
        pv = paper_value(method, dataset, protocol, c, options)
        if pv:
            mean_row.append(_fmt(pv["mean"], 4 if len(str(pv["mean"])) > 5 else 3))
            notes.append(f"{c}: {pv['source']}")
    if with_pixels:
        values = [pixel(r) for r in runs if pixel(r) is not None]
        mean_row.append(_fmt(float(np.mean(values))) if values else "–")
    if chosen:
        mean_row.append("")
    mean_row.append(",".join(map(str, complete)))
    rows.append(mean_row)
    return header, rows, notes


def _auroc_over_runs_with(component: str, runs: list[dict[str, Any]]) -> str:
    """`_mean_std` of a component's AUROC over the runs that have it; "–" where none has it, and
    the seeds named where only some have it."""
    has = [r for r in runs if component in r["metrics"]]
    if not has:
        return "–"
    cell = _mean_std([r["metrics"][component]["auroc"] for r in has])
    if len(has) == len(runs):
        return cell
    return f"{cell} (seed{'s' * (len(has) > 1)} {','.join(str(r['seed']) for r in has)})"


def _chosen(run: dict[str, Any]) -> str:
    """`noise_std=0.5 w_inf=1 (0.953)`: the values a choice record kept, with their selection AUROC."""
    best = max(c["selection_auroc"] for c in run["candidates"])
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in run["chosen"].items()) \
        + f" ({best:.3f})"


def video_budget(run: dict[str, Any]) -> str:
    """A video run's budget in words: epochs, training samples, test window stride."""
    cfg, samples = run["config"], run["protocol_info"].get("samples", {})
    parts = [f"{run['epochs']} epochs", f"{samples.get('train_samples', '?')} training samples"]
    if samples.get("max_train_samples") is None:
        parts[-1] += " (all)"
    if "batch_size" in run.get("options", {}):
        parts.append(f"batch {cfg['batch_size']}")
    if cfg.get("video") == "clip-patches":
        parts.append(f"test windows every {cfg['test_stride']} frame{'s' if cfg['test_stride'] != 1 else ''}")
    return ", ".join(parts)


def video_table(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]]:
    """One row per score component: frame-level AUROC pooled over all test frames (micro), the
    mean over clips (macro), EER, mean ± std over seeds, the paper's AUROC and EER beside."""
    first = runs[0]
    method, options = first["method"], json.dumps(first.get("options", {}), sort_keys=True)
    rs = sorted(runs, key=lambda r: r["seed"])
    header = ["score", "AUROC (pooled)", "AUROC (clip mean)", "EER", "paper AUROC", "paper EER", "seeds"]
    rows, notes = [], []
    for c in first["metrics"]:
        pv = paper_value(method, first["dataset"], "video", c, options) or {}
        rows.append([c, _mean_std([r["metrics"][c]["auroc"] for r in rs]),
                     _mean_std([r["metrics"][c]["auroc_macro"] for r in rs if r["metrics"][c].get("auroc_macro")]),
                     _mean_std([r["metrics"][c]["eer"] for r in rs]),
                     _fmt(pv["mean"], 4) if pv.get("mean") is not None else "–",
                     _fmt(pv["eer"], 4) if pv.get("eer") is not None else "–",
                     ",".join(str(r["seed"]) for r in rs)])
        if pv:
            notes.append(f"{c}: {pv['source']}")
    pixel = [r["pixel_level"]["pixel_auroc"] for r in rs if r.get("pixel_level", {}).get("pixel_auroc") is not None]
    if pixel:
        notes.append(f"pixel-level AUROC of `{first['headline']}` maps on the {first['pixel_level']['clips']} clips "
                     f"with masks: {_mean_std(pixel)} (no seed paper reports it)")
    return header, rows, notes


def video_summary(runs: list[dict[str, Any]]) -> str:
    """Every video run group in one table: the headline's frame-level AUROC and EER, with the
    normalisation, budget and device, beside the paper."""
    rows = []
    for group in iter_groups(r for r in runs if r["protocol"] == "video").values():
        first = group[0]
        head = first["headline"]
        pv = paper_value(first["method"], first["dataset"], "video", head,
                         json.dumps(first.get("options", {}), sort_keys=True)) or {}
        pixel = [r["pixel_level"]["pixel_auroc"] for r in group
                 if r.get("pixel_level", {}).get("pixel_auroc") is not None]
        choice = "label-free" if first["protocol_info"].get("label_free", True) else "paper-style (test labels)"
        rows.append([first["method"] + (f" {json.dumps(first['options'], sort_keys=True)}" if first.get("options")
                                        else ""), first.get("data_source", first["dataset"]),
                     first["protocol_info"]["normalisation"], choice, video_budget(first),
                     ", ".join(sorted({r.get("device_name", r["device"]) for r in group})), head,
                     _mean_std([r["metrics"][head]["auroc"] for r in group]),
                     _mean_std([r["metrics"][head]["eer"] for r in group]),
                     _mean_std(pixel) if pixel else "–", str(len(group)),
                     _fmt(pv["mean"], 4) if pv.get("mean") is not None else "–",
                     _fmt(pv["eer"], 4) if pv.get("eer") is not None else "–"])
    if not rows:
        return ""
    rows.sort()
    return ("Video (UCSD Ped2): frame-level AUROC pooled over all test frames (micro) and EER of the headline "
            "score, mean ± std over seeds; no temporal smoothing. Label-free: no test frame or label chooses an "
            "epoch or setting; paper-style: the epoch is chosen on labelled test patches, as OLED's code does "
            "(not a clean measurement). `validation`: scores scaled on held-out training samples; `per-clip`: scaled "
            "within each test clip (LSA's protocol, transductive). Pixel AUROC: patch-score maps against the "
            "dataset's masks (no seed paper reports it).\n\n"
            + _markdown(["method", "data", "normalisation", "epoch choice", "budget", "device", "score", "AUROC", "EER",
                         "pixel AUROC", "seeds", "paper AUROC", "paper EER"], rows))


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


def _complete_seeds(runs: list[dict[str, Any]]) -> list[int]:
    """The seeds that have every class of the group (a seed under way has not)."""
    classes = {r["normal_class"] for r in runs}
    return [s for s in sorted({r["seed"] for r in runs}) if {r["normal_class"] for r in runs if r["seed"] == s} == classes]


def _class_mean_over_seeds(runs: list[dict[str, Any]], value: Any) -> tuple[str, int]:
    """`mean ± std` over seeds of the mean over classes of `value(run)`, over the seeds that
    have every class of the group; and how many seeds that is."""
    complete = _complete_seeds(runs)
    per_seed = [float(np.mean([value(r) for r in runs if r["seed"] == s])) for s in complete]
    return _mean_std(per_seed), len(complete)


def _cell_of(run: dict[str, Any], cells: list[Any]) -> Any:
    for c in cells:
        if (c.method, c.dataset, c.protocol, c.epochs if c.epochs is not None else "na") == \
                (run["method"], run["dataset"], run["protocol"], run["epochs"]) and c.record_options == run.get("options", {}):
            return c
    return None


MET = 0.01  # a row meets its target within one point of it, or above it


def _class_means(runs: list[dict[str, Any]], value: Any) -> dict[int, float]:
    """Each class's mean over its seeds of `value(run)`."""
    per: dict[int, list[float]] = {}
    for r in runs:
        per.setdefault(r["normal_class"], []).append(value(r))
    return {c: float(np.mean(v)) for c, v in per.items()}


def _paper_over(paper: dict[str, Any] | None, classes: list[int], n_total: int | None) -> float | None:
    """The paper's mean over `classes`: its printed mean where they are all the dataset's, else
    the mean of its per-class values over them (None where it prints none)."""
    if not paper:
        return None
    if paper.get("mean") is not None and len(classes) == n_total:
        return float(paper["mean"])
    per = paper.get("per_class")
    return float(np.mean([per[c] for c in classes])) if per and all(c < len(per) for c in classes) else None


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def _on_classes(classes: list[int], n_total: int | None) -> str:
    """The words ` on 3 of 10 classes` where a comparison covers part of the dataset's classes: a
    mean over some classes meeting its target is not the table's mean meeting it."""
    return f" on {len(classes)} of {n_total} classes" if n_total and len(classes) < n_total else ""


def gap_to_target(ours: dict[int, float], paper: dict[str, Any] | None, official: dict[int, float] | None,
                  n_total: int | None) -> str:
    """What a row is held to, and ours against it (`ours − target`; "met" within `MET` or above):
    the official code's number on the same splits where that code ran and misses its paper by
    more than `MET` (or the paper has no value there), both means over the classes both ran; else
    the paper's, over our classes. A comparison over part of the classes says how many."""
    if not ours:
        return "–"
    if official:
        classes = sorted(set(ours) & set(official))
        if classes:
            off = float(np.mean([official[c] for c in classes]))
            mine = float(np.mean([ours[c] for c in classes]))
            paper_same = _paper_over(paper, classes, n_total)
            if paper_same is None or off < paper_same - MET:
                return (f"official code {off:.3f}{_on_classes(classes, n_total)}: {_signed(mine - off)}"
                        + (", met" if mine >= off - MET else ""))
    paper_here = _paper_over(paper, sorted(ours), n_total)
    if paper_here is None:
        return "–"
    mine = float(np.mean(list(ours.values())))
    return (f"paper {paper_here:.4f}{_on_classes(sorted(ours), n_total)}: {_signed(mine - paper_here)}"
            + (", met" if mine >= paper_here - MET else ""))


def _official_beside(group: list[dict[str, Any]], anchors: list[dict[str, Any]]) -> dict[int, float] | None:
    """The official code's per-class headline AUROC (mean over its seeds) on the group's data and
    protocol with the same kind of epoch choice (labelled selection set or not), if it ran with at
    least the group's epochs (a shorter official run is no target for a longer one of ours)."""
    first = group[0]
    options = first.get("options") or {}
    choice = "val_auroc" if options.get("select") == "val_auroc" or "choose" in options else "last"
    same = [a for a in anchors if (a["method"], a["dataset"], a["protocol"], a["protocol_info"].get("outlier_fraction"))
            == (first["method"], first["dataset"], first["protocol"], first["protocol_info"].get("outlier_fraction"))
            and a["settings"].get("epoch_choice", "last") == choice and _epochs(a) >= _epochs(first)]
    return _class_means(same, lambda a: a["metrics"][a["headline"]]["auroc"]) if same else None


def summary(runs: list[dict[str, Any]], anchors: list[dict[str, Any]] = ()) -> str:
    """The headline tables: for each cell of the papers' tables (`suites.json`) with finished
    runs under today's defaults, the headline AUROC (mean ± std over seeds of the mean over
    classes) beside the paper's; ALOCC's F1 against the outlier fraction in a table of its own,
    beside the F1 of the trivial rules; and the official codes' runs (`anchors`) beside ours."""
    from .reproduce import cells as suite_cells
    cells = suite_cells("all")
    groups = [g for g in iter_groups(runs).values() if not stale_settings(g[0])]
    rows, f1_groups = [], []
    for cell in cells:
        matching = [g for g in groups if _cell_of(g[0], [cell]) is cell]
        if cell.protocol == "video":  # in the video table below
            continue
        if cell.protocol == "outlier-fraction":
            if matching:
                f1_groups.append((cell, [r for g in matching for r in g]))
            continue
        for group in matching:
            first = group[0]
            head = first["headline"]
            ours, n_seeds = _class_mean_over_seeds(group, lambda r: r["metrics"][head]["auroc"])
            shown = cell.record_options
            pv = paper_value(cell.method, cell.dataset, cell.protocol, head, json.dumps(shown, sort_keys=True))
            n_classes = len({r["normal_class"] for r in group})
            n_total = len(first["protocol_info"].get("class_counts", {}).get("test", {})) or None
            # held to its target over the same seeds as `ours`, so a seed under way moves neither
            complete = set(_complete_seeds(group))
            target = gap_to_target(_class_means([r for r in group if r["seed"] in complete],
                                                lambda r: r["metrics"][head]["auroc"]), pv,
                                   _official_beside(group, list(anchors)), n_total)
            rows.append([f"{cell.suite} {cell.table}", cell.method + (f" {json.dumps(shown, sort_keys=True)}"
                                                                      if shown else ""),
                         f"{first.get('data_source', cell.dataset)}, {cell.protocol}",
                         "–" if first["epochs"] == "na" else str(first["epochs"]),
                         cell.selection, head, ours, str(n_seeds), str(n_classes),
                         _fmt(pv["mean"], 4) if pv else "–", target])
    if not rows and not f1_groups:
        out = ["No finished image run here is a cell of a paper's tables (`oneclass reproduce all --dry-run` lists "
               "them)."]
    else:
        out = [_summary_table(rows)]
    for cell, group in f1_groups:
        by_p: dict[float, list[dict[str, Any]]] = {}
        for r in group:
            by_p.setdefault(r["protocol_info"]["outlier_fraction"], []).append(r)
        head = group[0]["headline"]
        f1_rows = []
        for p in sorted(by_p):
            rs = by_p[p]
            cols = [_class_mean_over_seeds(rs, lambda r, k=k: r["metrics"][head][k])[0]
                    for k in ("f1_best", "f1_at_tau_0.5", "f1_best_normal", "f1_normal_at_tau_0.5")]
            counts = [r["protocol_info"]["counts"] for r in rs]
            all_normal = np.mean([2 * c["test_normal"] / (2 * c["test_normal"] + c["test_novel"]) for c in counts])
            all_novel = np.mean([2 * c["test_novel"] / (2 * c["test_novel"] + c["test_normal"]) for c in counts])
            f1_rows.append([f"{p:g}", *cols, _fmt(float(all_novel)), _fmt(float(all_normal)),
                            str(len({r['seed'] for r in rs})), str(len({r['normal_class'] for r in rs})), "≈ 0.97–0.99"])
        shown = cell.record_options
        out.append(f"F1 of {cell.method}{' ' + json.dumps(shown, sort_keys=True) if shown else ''} `{head}` against "
                   f"the outlier fraction ({cell.suite} {cell.table}; {group[0]['epochs']} epochs, {cell.dataset}; "
                   f"{cell.selection} epoch choice). F1 counts the novel class as positive, F1⁺ the "
                   "target (normal) class; τ = 0.5 calls D(R(X)) < 0.5 novel. The trivial rules' F1: calling "
                   "everything novel (novel positive) and everything normal (target positive). The paper does "
                   "not say which class is positive; its values are read from its Figure 8.\n\n"
                   + _markdown(["outlier fraction", "F1 best", "F1 τ=0.5", "F1⁺ best", "F1⁺ τ=0.5",
                                "all-novel F1", "all-normal F1⁺", "seeds", "classes", "paper"], f1_rows))
    video = video_summary(runs)
    if video:
        out.append(video)
    if anchors:
        out.append(official_summary(anchors, runs))
    return "\n\n".join(out) + "\n"


def _summary_table(rows: list[list[str]]) -> str:
    return ("AUROC of the headline score, mean ± standard deviation over seeds of the mean over classes "
            "(seeds: those with every class finished). `ours − target`: what the row is held to, the official "
            "code's AUROC on the same splits (same kind of epoch choice, mean over the classes both ran) where that "
            "code ran and misses its paper by more than a point, else the paper's over our classes (its per-class "
            "values where it prints them), naming how many classes where that is not all of them; \"met\": within "
            "one point of it or above. Generated by `oneclass report` from the run files.\n\n"
            + _markdown(["paper table", "method", "data, protocol", "epochs", "epoch choice", "score", "ours",
                         "seeds", "classes", "paper", "ours − target"], rows))


def group_rows(groups: list[list[dict[str, Any]]]) -> list[list[str]]:
    """One row per group of image runs: method and options, data and protocol, epochs, headline,
    its AUROC as the summary gives it, seeds, classes, and training speed."""
    rows = []
    for group in groups:
        first = group[0]
        head = first["headline"]
        ours, n_seeds = _class_mean_over_seeds(group, lambda r: r["metrics"][head]["auroc"])
        options = first.get("options") or {}
        stale = " (other settings than today's defaults)" if stale_settings(first) else ""
        speed = [r["train_images_per_second"] for r in group if r.get("train_images_per_second")]
        rows.append([first["method"] + (f" {json.dumps(options, sort_keys=True)}" if options else "") + stale,
                     f"{first.get('data_source', first['dataset'])}, {first['protocol']}",
                     "–" if first["epochs"] == "na" else str(first["epochs"]), head, ours, str(n_seeds),
                     str(len({r["normal_class"] for r in group})), f"{np.median(speed):.0f}" if speed else "–"])
    return rows


GROUP_HEADER = ["method", "data, protocol", "epochs", "score", "AUROC", "seeds", "classes", "train img/s"]
GROUP_NOTE = ("headline AUROC as in the summary: mean ± standard deviation over seeds of the mean over classes "
              "(seeds with every class finished)")


def comparison(runs: list[dict[str, Any]]) -> str:
    """Groups of image runs side by side, best headline AUROC first (e.g. methods tried on one's
    own folder by `evaluate --method a,b,c`)."""
    groups = [g for g in iter_groups(runs).values() if g[0]["protocol"] not in ("video", "outlier-fraction")]
    auroc = lambda row: float(row[4].split()[0]) if row[4][:1].isdigit() else -1.0  # noqa: E731
    rows = sorted(group_rows(groups), key=auroc, reverse=True)
    return f"Side by side, {GROUP_NOTE}:\n\n" + _markdown(GROUP_HEADER, rows)


def other_runs(runs: list[dict[str, Any]]) -> str | None:
    """One row per group of image runs that no paper's table holds (ablations, checks, a user's
    own folder), so runs compare at a glance, e.g. methods tried on one's own data. None when
    there are none."""
    from .reproduce import cells as suite_cells
    cells = suite_cells("all")
    groups = [g for g in iter_groups(runs).values()
              if g[0]["protocol"] not in ("video", "outlier-fraction") and _cell_of(g[0], cells) is None]
    if not groups:
        return None
    rows = sorted(group_rows(groups), key=lambda row: (row[1], row[0], row[2]))
    return (f"Every other group of image runs (ablations, checks, your own data), {GROUP_NOTE}; each group's own "
            "section below has its classes and settings.\n\n" + _markdown(GROUP_HEADER, rows))


def novel_class_table(runs: list[dict[str, Any]]) -> str | None:
    """The headline AUROC of each normal class against each novel class alone (mean over seeds),
    from runs that recorded it (`headline_auroc_by_novel_class`): which kinds of novelty a model
    tells apart, e.g. which defect it misses. None where no run has it."""
    have = [r for r in runs if r.get("headline_auroc_by_novel_class")]
    if not have:
        return None
    kinds = list(dict.fromkeys(k for r in have for k in r["headline_auroc_by_novel_class"]))
    rows = []
    for c in sorted({r["normal_class"] for r in have}):
        rs = [r for r in have if r["normal_class"] == c]
        cells = []
        for k in kinds:
            vals = [r["headline_auroc_by_novel_class"][k] for r in rs if k in r["headline_auroc_by_novel_class"]]
            cells.append(_fmt(float(np.mean(vals))) if vals else "–")
        rows.append([f"{c} ({rs[0]['normal_class_name']})", *cells, str(len(rs))])
    return (f"AUROC of `{have[0]['headline']}` against each novel class alone (the normal class's test images "
            "against that class's), mean over seeds:\n\n" + _markdown(["normal class", *kinds, "seeds"], rows))


def _ours_beside(anchor: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our runs of the anchor's method, data and protocol (outlier fraction included) at today's
    defaults, with the same kind of epoch choice (the last epoch: no options; a labelled
    selection set: `select=val_auroc`) and at most the anchor's epochs: of those, the group with
    the most epochs, then the largest (an official run at a reduced budget is set beside ours at
    that budget, never beside a longer training)."""
    fraction = anchor["protocol_info"].get("outlier_fraction")
    options = {"select": "val_auroc"} if anchor["settings"].get("epoch_choice") == "val_auroc" else {}
    groups = [g for g in iter_groups(runs).values()
              if (g[0]["method"], g[0]["dataset"], g[0]["protocol"], g[0]["protocol_info"].get("outlier_fraction"))
              == (anchor["method"], anchor["dataset"], anchor["protocol"], fraction)
              and (g[0].get("options") or {}) == options and not stale_settings(g[0])
              and _epochs(g[0]) <= _epochs(anchor)]
    return max(groups, key=lambda g: (_epochs(g[0]), len(g))) if groups else []


def _epochs(run: dict[str, Any]) -> float:
    """A run's training epochs as a number (methods without epochs: 0)."""
    return float(run["epochs"]) if isinstance(run.get("epochs"), (int, float)) else 0.0


def _anchor_groups(anchors: list[dict[str, Any]]) -> list[tuple[tuple, list[dict[str, Any]]]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for a in anchors:
        key = (a["method"], a["dataset"], a["protocol"], a["protocol_info"].get("outlier_fraction"),
               _budget(a), a["settings"].get("epoch_choice", "?"))
        groups.setdefault(key, []).append(a)
    return sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0]))


def _budget(anchor: dict[str, Any]) -> str:
    """An official run's epochs, and its batch size where the record gives one (the same epochs
    at another batch are another number of steps, so another run)."""
    batch = anchor["settings"].get("batch_size")
    return f"{anchor['epochs']}" + (f", batch {batch}" if batch else "")


def _budget_words(epochs: Any, batch: int | None) -> str:
    return f"{epochs} epochs" + (f" at batch {batch}" if batch else "")


def _where(dataset: str, protocol: str, fraction: float | None) -> str:
    return f"{dataset}, {protocol}" + (f" p = {fraction:g}" if fraction is not None else "")


def _mean_metric(rs: list[dict[str, Any]], head: str, key: str, empty: str = "") -> str:
    """Mean over classes of each class's mean over its seeds, of one metric of the headline score
    (runs without it left out): a class with more seeds finished weighs no more than another."""
    per_class = _class_means([r for r in rs if key in r["metrics"][head]], lambda r: r["metrics"][head][key])
    return _fmt(float(np.mean(list(per_class.values())))) if per_class else empty


def _seed_count(rs: list[dict[str, Any]]) -> str:
    """Seeds per class: "3", or "1–2" where some classes have more seeds finished than others."""
    counts: dict[Any, set] = {}
    for r in rs:
        counts.setdefault(r["normal_class"], set()).add(r["seed"])
    low, high = min(map(len, counts.values())), max(map(len, counts.values()))
    return str(low) if low == high else f"{low}–{high}"


def _choice(choice: str) -> str:
    return {"last": "label-free (last epoch)", "val_auroc": "paper-style (labelled selection set)"}.get(choice, choice)


def official_summary(anchors: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    """One row per protocol the official code ran: its headline AUROC and best F1, the mean over
    the classes it finished (over those ours has run too, where ours has any), beside ours."""
    rows = []
    for (method, dataset, protocol, fraction, epochs, choice), group in _anchor_groups(anchors):
        head = group[0]["headline"]
        classes = sorted({a["normal_class"] for a in group})
        ours = [r for r in _ours_beside(group[0], runs) if r["normal_class"] in classes]
        if ours:  # both means over the classes both have run, so the two columns compare
            classes = sorted({r["normal_class"] for r in ours})
            group = [a for a in group if a["normal_class"] in classes]
        mean = lambda rs, k: _mean_metric(rs, head, k, "–")  # noqa: E731
        pv = paper_value(method, dataset, protocol, head, "{}")
        paper = "≈ 0.97–0.99 (F1)" if method == "alocc" and protocol == "outlier-fraction" else (
            _fmt(pv["mean"], 4) + " (AUROC)" if pv else "–")
        rows.append([method, _where(dataset, protocol, fraction), str(epochs), _choice(choice), ",".join(map(str, classes)),
                     _seed_count(group), mean(group, "auroc"), mean(ours, "auroc"),
                     mean(group, "f1_best"), mean(ours, "f1_best"), paper])
    return ("The papers' official code on our splits (`results/anchors/`, `scripts/anchors/`), beside our "
            "implementation on the same classes: mean over those classes (each class the mean over its seeds) of "
            "the headline score's AUROC and best F1 (novel positive); `seeds`: the official code's per class. "
            "Per class and the changes made around each code: `report.md`.\n\n"
            + _markdown(["method", "data, protocol", "official epochs, batch", "official epoch choice", "classes", "seeds",
                         "official AUROC",
                         "ours AUROC", "official F1 best", "ours F1 best", "paper"], rows))


def official_table(anchors: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    """The papers' official code run on our splits (`results/anchors/`, scripts/anchors/) beside
    our implementation on the same protocol, per class: AUROC and best F1 of the headline score
    (mean ± std over seeds), and the paper's value where it reports that cell."""
    out, described = [], set()
    for (method, dataset, protocol, fraction, _, choice), group in _anchor_groups(anchors):
        head = group[0]["headline"]
        ours = _ours_beside(group[0], runs)
        pv = paper_value(method, dataset, protocol, head, "{}") or {}
        per = pv.get("per_class")
        header = ["class", "official AUROC", "ours AUROC", "official F1 best", "ours F1 best", "official F1 τ=0.5",
                  "ours F1 τ=0.5", "paper AUROC", "seeds (official / ours)"]
        rows = []
        classes = sorted({a["normal_class"] for a in group})
        for cls in classes:
            off = [a for a in group if a["normal_class"] == cls]
            mine = [r for r in ours if r["normal_class"] == cls]
            cell = lambda rs, k: _mean_std([r["metrics"][head][k] for r in rs if k in r["metrics"][head]])  # noqa: E731
            rows.append([str(cls), cell(off, "auroc"), cell(mine, "auroc"), cell(off, "f1_best"), cell(mine, "f1_best"),
                         cell(off, "f1_at_tau_0.5"), cell(mine, "f1_at_tau_0.5"),
                         _fmt(per[cls]) if per and cls < len(per) else "",
                         f"{','.join(str(a['seed']) for a in off)} / {','.join(str(r['seed']) for r in mine) or '–'}"])
        mine_same = [r for r in ours if r["normal_class"] in classes]
        mean = lambda rs, k: _mean_metric(rs, head, k)  # noqa: E731
        rows.append([f"mean ({len(classes)} classes)", mean(group, "auroc"), mean(mine_same, "auroc"),
                     mean(group, "f1_best"), mean(mine_same, "f1_best"), mean(group, "f1_at_tau_0.5"),
                     mean(mine_same, "f1_at_tau_0.5"), "", ""])
        first = group[0]
        where = _where(dataset, protocol, fraction)
        mine_budget = sorted({_budget_words(r["epochs"], r.get("config", {}).get("batch_size")) for r in ours})
        code = f"{first['repository']} @ {first['commit'][:7]}"
        if code not in described:  # the changes once per code, not per table
            described.add(code)
            out.append(f"### {method}: official code ({code})\n\nChanges made around it (its files unedited): "
                       + "; ".join(f"({i}) {c}" for i, c in enumerate(first["changes"], 1)) + ".")
        out.append(f"#### {method}, {where}, official {_choice(choice)} beside ours\n\n"
                   f"Score `{head}`; official: {_budget_words(first['epochs'], first['settings'].get('batch_size'))}, "
                   f"{first['device']} ({first.get('device_name', '')}), "
                   f"TensorFlow {first['versions'].get('tensorflow', '?')}, epoch choice "
                   f"{_choice(choice)}; ours: {', '.join(mine_budget) or '–'}, "
                   f"{', '.join(sorted({r['device'] for r in ours})) or '–'}, today's defaults.\n\n"
                   + _markdown(header, rows))
    return "\n\n".join(out)


MARK_START, MARK_END = "<!-- oneclass report: summary start -->", "<!-- oneclass report: summary end -->"


def embed_summary(path: str | Path, text: str, write: bool = True) -> str:
    """`path`'s content with the block between the summary markers replaced by `text`."""
    path = Path(path)
    content = path.read_text()
    if MARK_START not in content or MARK_END not in content:
        raise OneClassError(f"{path} has no summary block ({MARK_START} … {MARK_END})")
    before, rest = content.split(MARK_START, 1)
    _, after = rest.split(MARK_END, 1)
    new = f"{before}{MARK_START}\n{text}{MARK_END}{after}"
    if write and new != content:
        write_text(path, new)
    return new


def report(results: str | Path, write: bool = True) -> str:
    """Markdown for every group of runs; with `write`, also `report.md` and `report.csv` in `results`."""
    runs, anchors = collect(results), collect_anchors(results)
    if not runs:
        return f"no finished runs under {results}"
    sections = ["# oneclass results\n\nAUROC per normal class (label 1 = novel), mean ± standard deviation over "
                "seeds; the papers' values beside ours where the paper reports that method, dataset and protocol.",
                "## Summary\n\n" + summary(runs, anchors)]
    others = other_runs(runs)
    if others:
        sections.append("## Other runs (in no paper's table)\n\n" + others)
    csv_buf = io.StringIO()
    writer = csv.writer(csv_buf)
    writer.writerow(["method", "options", "dataset", "protocol", "outlier_fraction", "epochs", "normal_class",
                     "seed", "component", "auroc", "aupr", "eer", "f1_best", "paper_auroc_class", "paper_auroc_mean",
                     "device", "train_images_per_second", "score_images_per_second"])
    fraction_runs = []
    for key, group in sorted(iter_groups(runs).items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        method, options, dataset, protocol, fraction, epochs, _ = key
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
        if protocol == "video":
            header, rows, notes = video_table(group)
            info = group[0]["protocol_info"]
            title = (f"## {method}{' ' + options if options != '{}' else ''} — {dataset}, video protocol, "
                     f"{info['normalisation']} normalisation; {video_budget(group[0])}")
        else:
            header, rows, notes = group_table(group)
            budget = f", {epochs} epochs" if epochs != "na" else ""
            title = f"## {method}{' ' + options if options != '{}' else ''} — {dataset}, {protocol} protocol{budget}"
        text = f"{title}\n\n{_settings(group)}\n\n{_markdown(header, rows)}"
        if notes:
            text += ("\n\nNotes: " if protocol == "video" else "\n\nPaper values: ") + "; ".join(notes) + "."
        by_class = novel_class_table(group)
        if by_class:
            text += "\n\n" + by_class
        sections.append(text)
    if fraction_runs:
        sections.append("## outlier-fraction protocol\n\n" + fraction_table(fraction_runs))
    if anchors:
        sections.append("## Official code beside ours\n\n" + official_table(anchors, runs))
    md = "\n\n".join(sections) + "\n"
    if write:
        write_text(Path(results) / "report.md", md)
        write_text(Path(results) / "report.csv", csv_buf.getvalue())
    return md
