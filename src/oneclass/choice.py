"""Settings a paper leaves unstated, chosen per class on the labelled selection set.

The rule (`--choose KEY=V1,V2 …`): for every class and seed, each combination of the candidate
values is an ordinary run with `select=val_auroc`, so its epoch is the one with the best AUROC on
the labelled selection set drawn from the *training* split (150 held-out normal images and 150
images of the other classes, `evaluation.SELECTION_SIZE`); the combination whose chosen epoch has
the highest selection AUROC is the class's run, a tie going to the first combination in the order
given. No test image or label takes part. It is the practice of OLED's and ALOCC's official codes
(a labelled set for the epoch), extended to the settings, so its numbers are *paper-style*, never
label-free; every record says so.

A choice record is a copy of the chosen run's record (its metrics, protocol, timing) with the
rule, the chosen values and every candidate beside it: its selection AUROC and epoch, its run
file and, for the reader only, its test AUROC (what an oracle would have picked). Its identity
is the base configuration with the candidate values in place of the chosen keys, so it never
answers for a single run, and it is rewritten from the candidates' files whenever they change."""
from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .errors import OneClassError
from .fileio import write_json

RULE = ("per class and seed, the combination of the candidate values (and within it the epoch) with the highest "
        "AUROC on the labelled selection set from the training split; ties to the first combination given")


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the candidate values, the first key varying slowest, in the order given."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def check_grid(grid: dict[str, list[Any]], options: dict[str, Any]) -> None:
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or len(values) < 1:
            raise OneClassError(f"--choose {key}: give one or more comma-separated values")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise OneClassError(f"--choose {key}: a value is given twice ({', '.join(map(str, values))})")
        if key in options:
            raise OneClassError(f"{key} is both fixed (--option) and chosen (--choose): give it once")
        if key in ("select", "epochs", "seed", "device"):
            raise OneClassError(f"--choose cannot choose {key!r}: the epoch is chosen anyway (select=val_auroc), "
                                "and seed and device are not settings")
    if options.get("select", "val_auroc") != "val_auroc":
        raise OneClassError("--choose picks the epoch on the labelled selection set too: it cannot run with "
                            f"select={options['select']!r}")


def canonical_grid(spec: Any) -> dict[str, list[Any]]:
    """The candidate values in their options' own types (`w_inf=1` is 1.0), so a choice record
    keys and reads alike however its values were written."""
    from .evaluation import canonical_config
    from .registry import preset_for
    preset = spec.preset or preset_for(spec.method, spec.dataset)
    return {k: [canonical_config(spec.method, preset, {k: v})[k] for v in values] for k, values in spec.choose.items()}


def candidate_specs(spec: Any) -> list[Any]:
    """The evaluation of each combination (plain runs, each cached under its own identity)."""
    from .registry import detector_class
    if "select" not in getattr(detector_class(spec.method), "defaults", {}):
        raise OneClassError(f"--choose picks each candidate's epoch on the labelled selection set, and "
                            f"{spec.method} trains no epochs: give its settings with --option")
    if spec.protocol == "video":  # a video's labelled set holds anomalous patches of the *test* clips
        raise OneClassError("--choose chooses on a labelled set from the training split, which a video dataset "
                            "does not have (its select=val_auroc uses test clips): fix the settings with --option")
    check_grid(spec.choose, spec.options)
    return [replace(spec, options={**spec.options, **combo, "select": "val_auroc"}, choose={})
            for combo in combinations(canonical_grid(spec))]


def choice_options(spec: Any) -> dict[str, Any]:
    """The options a choice record is reported under: the fixed ones (less those at their default,
    as a run's), the selection and the candidates."""
    from .evaluation import distinct_options
    from .registry import preset_for
    fixed = distinct_options(spec.method, spec.preset or preset_for(spec.method, spec.dataset), spec.options)
    return {**fixed, "select": "val_auroc", "choose": canonical_grid(spec)}


def _identity(run: dict[str, Any], grid: dict[str, list[Any]]) -> dict[str, Any]:
    ident = dict(run["run_identity"])
    ident["config"] = {k: v for k, v in ident["config"].items() if k not in grid}
    return {**ident, "choose": {k: list(v) for k, v in grid.items()}}


def _selection_auroc(run: dict[str, Any]) -> float:
    best = run.get("fit", {}).get("best_value")
    if best is None:
        raise OneClassError(f"run {run.get('_path', run['run_key'])} has no selection AUROC (fit.best_value)")
    return -float(best)  # the trainer minimises; select=val_auroc records the negated AUROC


def record(spec: Any, candidates: list[tuple[dict[str, Any], dict[str, Any], Path]], results: str | Path) -> dict[str, Any]:
    """The choice record of one (class, seed, protocol variant) from its candidates' runs, given
    as (combination, run record, run file) in the order of `combinations`."""
    scored = [(_selection_auroc(run), k) for k, (_, run, _) in enumerate(candidates)]
    best = max(scored, key=lambda sk: (sk[0], -sk[1]))[1]  # ties: the first combination
    combo, chosen, _ = candidates[best]
    out = {k: v for k, v in chosen.items() if not k.startswith("_")}
    ident = _identity(chosen, canonical_grid(spec))
    from .evaluation import run_key
    out.update(options=choice_options(spec), run_identity=ident, run_key=run_key(ident), chosen=combo)
    out["protocol_info"] = {**chosen["protocol_info"], "label_free": False, "choice": RULE}
    out["train_seconds_all_candidates"] = sum(run["train_seconds"] for _, run, _ in candidates)
    head = chosen["headline"]
    out["candidates"] = [{"options": c, "selection_auroc": _selection_auroc(run),
                          "best_epoch": run.get("fit", {}).get("best_epoch"),
                          "test_auroc": run["metrics"][head]["auroc"],
                          "run": str(path.relative_to(results)) if path.is_relative_to(results) else str(path)}
                         for c, run, path in candidates]
    return out


def finish(spec: Any, data_root: str | Path | None, results: str | Path, *, train: Any = None,
           echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Write (or refresh) the choice record of every (class, seed, variant) whose candidates have
    all finished; return the choice records."""
    from .evaluation import plan, read_result, record_path
    results = Path(results)
    combos = combinations(canonical_grid(spec))
    plans = [plan(s, data_root, results, train=train) for s in candidate_specs(spec)]
    out = []
    for tasks in zip(*plans):  # one task per (class, seed) in every candidate's plan, in one order
        for v in range(len(tasks[0].paths)):
            runs = [(combo, t.done[v], t.paths[v]) for combo, t in zip(combos, tasks)]
            if any(run is None for _, run, _ in runs):
                continue
            rec = record(spec, runs, results)
            path = record_path(results, rec)
            old = read_result(path)
            if old is None or {k: v for k, v in old.items() if k != "finished_at"} != \
                    {k: v for k, v in rec.items() if k != "finished_at"}:
                write_json(path, rec, compact=True)
                echo(f"  -> {path.parent.name}/{path.name}: chose {json.dumps(rec['chosen'])} "
                     f"(selection AUROC {max(c['selection_auroc'] for c in rec['candidates']):.4f}), "
                     f"AUROC({rec['headline']}) {rec['metrics'][rec['headline']]['auroc']:.4f}")
            out.append(rec)
    return out
