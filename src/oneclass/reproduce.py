"""One command per paper table: the suites of `suites.json`, run (on Ray where installed) and
reported beside the papers' values.

    oneclass reproduce lsa                       # every cell of LSA's tables, seeds 0, 1, 2
    oneclass reproduce oled --table "Table 1" --seeds 0 --epochs 5

A suite is a list of cells (method, options, dataset, protocol, classes, epochs); each cell is
one `EvalSpec`, so its runs are the cached runs `oneclass evaluate` makes: finished runs are
skipped, an interrupted suite resumes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import choice, evaluation
from .data import load as load_dataset
from .errors import OneClassError
from .fileio import write_text
from .registry import detector_class, preset_for
from .runners import RunSummary, TimeBudget, ray_available, run_local, run_ray

SUITES_FILE = Path(__file__).with_name("suites.json")
DEFAULT_SEEDS = (0, 1, 2)
# how a cell's epoch (or setting) is chosen: without any label, or on labelled outliers as the paper's code did
SELECTIONS = ("label-free", "paper-style")


@dataclass(frozen=True)
class Cell:
    """One row of a paper's table: a method configuration on a dataset and protocol."""
    suite: str
    table: str
    method: str
    dataset: str
    protocol: str = "standard"
    epochs: int | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    classes: tuple[int, ...] | None = None
    outlier_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    preset: str | None = None
    baseline: bool = False
    selection: str = "label-free"
    paper: str = ""
    # settings chosen per class on the labelled selection set (`choice`): option -> candidates
    choose: dict[str, list[Any]] = field(default_factory=dict, hash=False)

    @property
    def record_options(self) -> dict[str, Any]:
        """The options its runs are recorded under: those away from the preset's defaults (a
        choice's also the selection and the candidates)."""
        if self.choose:
            return choice.choice_options(self)
        try:
            return evaluation.distinct_options(self.method, self.preset or preset_for(self.method, self.dataset),
                                               self.options)
        except OneClassError:
            return dict(self.options)

    @property
    def title(self) -> str:
        opts = " " + json.dumps(self.options, sort_keys=True) if self.options else ""
        chosen = f" and {', '.join(self.choose)}" if self.choose else ""
        return f"{self.table}: {self.method}{opts} on {self.dataset} ({self.protocol}), {self.selection} epoch{chosen}"


@lru_cache(maxsize=1)
def _suites_file() -> dict[str, Any]:
    return json.loads(SUITES_FILE.read_text())


def suites() -> dict[str, str]:
    """Suite names and what they reproduce (`all` is every cell)."""
    return {**_suites_file()["suites"], "all": "every cell of every suite"}


def pending(suite: str) -> list[dict[str, str]]:
    """Tables of a suite that cannot be run yet, with the reason."""
    return [p for p in _suites_file()["pending"] if suite == "all" or p["suite"] == suite]


def cells(suite: str, tables: list[str] | None = None, methods: list[str] | None = None,
          selection: str | None = None, datasets: list[str] | None = None) -> list[Cell]:
    """The cells of `suite` (`baselines`: the baseline rows of every paper; `all`: every cell),
    narrowed to the tables named in `tables` ("Table 1", "table1" and "1" all name Table 1), to
    `methods`, to one kind of epoch choice (`selection`: "label-free" or "paper-style") and to
    `datasets`."""
    if suite not in suites():
        raise OneClassError(f"unknown suite {suite!r}; suites: {', '.join(suites())}")
    out = []
    for c in _suites_file()["cells"]:
        if suite == "baselines" and not c.get("baseline") or suite not in ("all", "baselines", c["suite"]):
            continue
        c = dict(c)
        for key in ("classes", "outlier_fractions"):
            if key in c:
                c[key] = tuple(c[key])
        out.append(Cell(**c))
    if tables:
        wanted = {_table_key(t) for t in tables}
        known = sorted({c.table for c in out})
        out = [c for c in out if _table_key(c.table) in wanted]
        if not out:
            raise OneClassError(f"no table {', '.join(map(repr, tables))} in suite {suite!r}; tables: {', '.join(known)}")
    if methods:
        out = _narrowed(out, "method", methods, f"of method(s) {', '.join(methods)}", suite, tables)
    if selection:
        if selection not in SELECTIONS:
            raise OneClassError(f"unknown epoch choice {selection!r}; use {' or '.join(SELECTIONS)}")
        out = [c for c in out if c.selection == selection]
        if not out:
            raise OneClassError(f"no {selection} cell in suite {suite!r}" + (f" {tables!r}" if tables else "")
                                + (f" for {', '.join(methods)}" if methods else ""))
    if datasets:
        out = _narrowed(out, "dataset", datasets, f"on dataset(s) {', '.join(datasets)}", suite, tables)
    return out


def _narrowed(cells: list[Cell], field_name: str, wanted: list[str], what: str, suite: str,
              tables: list[str] | None) -> list[Cell]:
    """The cells whose `field_name` is one of `wanted`; none left is an error naming the values there are."""
    known = sorted({getattr(c, field_name) for c in cells})
    out = [c for c in cells if getattr(c, field_name) in wanted]
    if not out:
        raise OneClassError(f"no cell {what} in suite {suite!r}{' ' + repr(tables) if tables else ''}; "
                            f"{field_name}s: {', '.join(known)}")
    return out


def _table_key(name: str) -> str:
    key = name.lower().replace(" ", "")
    return key[len("table"):] if key.startswith("table") else key


def with_options(chosen: list[Cell], options: dict[str, Any]) -> tuple[list[Cell], list[Cell]]:
    """The cells run with `options` on top of their own (e.g. `precision="bf16"`: runs of their own,
    beside the declared ones), and the cells left out because their method has no such option
    (OC-SVM has no `precision`). A value a method refuses fails when its detector is made."""
    kept, left = [], []
    for cell in chosen:
        cls = detector_class(cell.method)
        preset = cell.preset or preset_for(cell.method, cell.dataset)
        known = {**cls.defaults, **cls.presets.get(preset, {})}
        if all(k in known for k in options):
            kept.append(replace(cell, options={**cell.options, **options}))
        else:
            left.append(cell)
    if not kept:
        raise OneClassError(f"no chosen cell's method takes option(s) {', '.join(sorted(options))}: "
                            f"methods {', '.join(sorted({c.method for c in chosen}))}")
    return kept, left


def options_tag(options: dict[str, Any]) -> str:
    """How a suite file run with extra options is named: `precision=bf16`, options sorted."""
    return ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(options.items()))


def spec_of(cell: Cell, seeds: list[int], classes: list[int | str] | None = None, epochs: int | None = None,
            device: str = "auto") -> evaluation.EvalSpec:
    """The evaluation of a cell; `classes` and `epochs` narrow or shorten it (`epochs` only for
    the cells that train in epochs: OC-SVM and KDE have none)."""
    return evaluation.EvalSpec(
        method=cell.method, dataset=cell.dataset, protocol=cell.protocol,
        classes=list(classes) if classes is not None else (list(cell.classes) if cell.classes else None),
        seeds=list(seeds), epochs=epochs if epochs is not None and cell.epochs is not None else cell.epochs,
        outlier_fractions=list(cell.outlier_fractions), device=device, options=dict(cell.options),
        preset=cell.preset, choose={k: list(v) for k, v in cell.choose.items()})


def plan_cell(spec: evaluation.EvalSpec, data_root: str | Path | None, results: str | Path,
              train: Any = None) -> list[evaluation.RunTask]:
    """The runs of a cell's evaluation; a choice cell's are its candidates' (its choice records
    are made from them once they are stored)."""
    return [t for s in (choice.candidate_specs(spec) if spec.choose else [spec])
            for t in evaluation.plan(s, data_root, results, train=train)]


@dataclass(frozen=True)
class Pace:
    """How long a finished run of a cell took on one device type: medians over `runs` runs."""
    seconds: float  # training plus scoring (every protocol variant a run scores)
    runs: int
    train_seconds: float
    score_seconds: float
    epochs: float  # epochs a run trains (0: none, as for OC-SVM)
    images_scored: float  # validation and test images a run scores (0: not recorded)

    def left(self, kept: evaluation.Kept | None) -> float:
        """The seconds a run still needs when it resumes from `kept`: the epochs its log lacks
        at the median seconds an epoch, and the images not scored yet at the median seconds an
        image. An estimate: a run's scoring starts once its training is done, and the images it
        kept are counted over every scoring pass."""
        if kept is None:
            return self.seconds
        train = self.train_seconds
        if kept.images:
            train = 0.0  # scoring has begun: training is over
        elif self.epochs:
            train *= max(0.0, 1.0 - kept.epochs / self.epochs)
        score = self.score_seconds
        if self.images_scored:
            score *= max(0.0, 1.0 - kept.images / self.images_scored)
        return train + score


def pace(tasks: list[evaluation.RunTask]) -> dict[str, Pace]:
    """How long a run of these took, from the finished ones: per device type ("cpu", "cuda"), the
    medians of a run's seconds (whole, training, scoring), epochs and images scored. What a dry run
    and a time budget estimate the rest with; a run resumed from its checkpoint counts only its
    last stretch, hence the median, not the mean."""
    by_device: dict[str, list[tuple[float, float, float, float]]] = {}
    for task in tasks:
        done = [r for r in task.done if r is not None]
        if not done or not all("train_seconds" in r for r in done):
            continue
        train = float(done[0]["train_seconds"])
        score = sum(float(r.get("score_seconds") or 0.0) for r in done)
        epochs = done[0].get("epochs")
        images = ((done[0].get("fit") or {}).get("n_val") or 0) + sum(
            ((r.get("protocol_info") or {}).get("counts") or {}).get("test") or 0 for r in done)
        by_device.setdefault(str(done[0].get("device", "cpu")).split(":")[0], []).append(
            (train, score, float(epochs) if isinstance(epochs, (int, float)) else 0.0, float(images)))
    out = {}
    for device, runs in sorted(by_device.items()):
        train, score, epochs, images = (np.array(v) for v in zip(*runs))
        out[device] = Pace(float(np.median(train + score)), len(runs), float(np.median(train)),
                           float(np.median(score)), float(np.median(epochs)), float(np.median(images)))
    return out


def cell_pace(cell: Cell, seeds: list[int], epochs: int | None, device: str, data_root: str | Path | None,
              results: str | Path, train: Any = None) -> dict[str, Pace]:
    """`pace` over every stored run of a cell, whichever classes and seeds a call narrows to: a
    call for one class must not start its run blind because that class has none finished yet."""
    wide = spec_of(cell, sorted(set(seeds) | set(DEFAULT_SEEDS)), None, epochs, device)
    return pace(plan_cell(wide, data_root, results, train=train))


def _estimator(tasks: dict[Cell, list[evaluation.RunTask]], paces: dict[Cell, dict[str, Pace]],
               device: str, results: str | Path) -> Callable[[evaluation.RunTask], float | None]:
    """A run's expected seconds: what it still needs at the median pace of its cell's finished
    runs on the device type this command uses, less what it kept from an attempt cut off earlier
    (None where none has finished there)."""
    from .detector import resolve_device
    here = resolve_device(device).type
    expected: dict[str, Pace] = {}
    for cell, cell_tasks in tasks.items():
        took = paces[cell].get(here)
        if took is not None:
            expected.update({t.name: took for t in cell_tasks})

    def estimate(task: evaluation.RunTask) -> float | None:
        took = expected.get(task.name)
        return None if took is None else took.left(evaluation.kept_progress(task, results))
    return estimate


def duration(seconds: float) -> str:
    """A duration as a person reads it: 45 s, 12 min, 3.4 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


@dataclass
class Reproduction:
    cells: list[Cell]
    tasks: dict[Cell, list[evaluation.RunTask]]
    summary: RunSummary
    skipped: int
    report: str


def reproduce(suite: str, data_root: str | Path | None, results: str | Path, *, tables: list[str] | None = None,
              seeds: list[int] | None = None, classes: list[int | str] | None = None, epochs: int | None = None,
              device: str = "auto", executor: str = "auto", address: str | None = None, cpus_per_run: float = 1.0,
              gpus_per_run: float | None = None, jobs: int | None = None, time_budget: float | None = None,
              progress: bool = True, echo: Callable[[str], None] = print,
              suite_cells: list[Cell] | None = None, options: dict[str, Any] | None = None) -> Reproduction:
    """Run every missing run of a suite, skip finished ones, and return the suite's report.
    `executor`: "ray", "local" (here: one run after the other, or `jobs` at a time in processes)
    or "auto" (Ray where it is installed). `time_budget` (seconds): start only the runs that, at
    the median pace of their cell's finished runs on this device (`pace`; for a cell with none, of
    its runs finished in this call), end within it, a run cut off earlier counting only what it has
    not kept (`Pace.left`); the others are left for the next call. `suite_cells` replaces the
    declared cells (tests, a user's own suite). `options`: set on every cell whose method has them
    (`with_options`; the others are left out), runs of their own kept in
    RESULTS/reproduce-SUITE-<options>.md beside the declared suite's file."""
    if executor not in ("auto", "ray", "local"):
        raise OneClassError(f"unknown executor {executor!r}; use auto, ray or local")
    if executor == "ray" and not ray_available():
        raise OneClassError("Ray is not installed: pip install 'oneclass[ray]' (or use --executor local)")
    chosen = cells(suite, tables) if suite_cells is None else suite_cells
    if options:
        chosen, left = with_options(chosen, options)
        if left:
            echo(f"left out (no option {', '.join(sorted(options))}): " + "; ".join(c.title for c in left))
    seeds = list(seeds) if seeds is not None else list(DEFAULT_SEEDS)
    train_splits: dict[str, Any] = {}
    tasks: dict[Cell, list[evaluation.RunTask]] = {}
    for cell in chosen:
        if cell.dataset not in train_splits:  # load (and decode into the cache) once, here
            train_splits[cell.dataset] = load_dataset(cell.dataset, data_root)[0]
        spec = spec_of(cell, seeds, classes, epochs, device)
        tasks[cell] = plan_cell(spec, data_root, results, train=train_splits[cell.dataset])
    todo, seen = [], set()
    for cell_tasks in tasks.values():
        for t in cell_tasks:
            if not t.finished and t.name not in seen:  # two suites' cells may share runs
                seen.add(t.name)
                todo.append(t)
    skipped = sum(t.finished for ts in tasks.values() for t in ts)
    use_ray = executor == "ray" or (executor == "auto" and ray_available() and len(todo) > 1)
    echo(f"{suite}: {len(chosen)} cell(s), {len(todo)} run(s) to do, {skipped} finished before"
         + ("; on Ray" if use_ray and todo else ""))
    cell_of = {t.name: cell.title for cell, ts in tasks.items() for t in ts}
    budget = None
    if time_budget is not None:
        paces = {cell: cell_pace(cell, seeds, epochs, device, data_root, results, train_splits[cell.dataset])
                 for cell in chosen}
        budget = TimeBudget(time_budget, _estimator(tasks, paces, device, results), kind=lambda task: cell_of.get(task.name))
    if todo and use_ray:
        summary = run_ray(todo, data_root, results, address=address, cpus_per_run=cpus_per_run,
                          gpus_per_run=gpus_per_run, jobs=jobs, budget=budget, progress=progress, echo=echo)
    elif todo:
        summary = run_local(todo, data_root, results, jobs=jobs or 1, cpus_per_run=cpus_per_run, budget=budget,
                            progress=progress, echo=echo)
    else:
        summary = RunSummary(executor="none")
    # The suite's file is the whole suite: the cells run now over every class and every seed
    # stored (not only those asked for), the other cells' sections as an earlier run wrote them.
    doc_seeds = sorted({*DEFAULT_SEEDS, *seeds})
    doc_tasks = {cell: plan_cell(spec_of(cell, doc_seeds, None, epochs, device), data_root, results,
                                 train=train_splits[cell.dataset]) for cell in chosen}
    doc_runs = {cell: choice.finish(spec_of(cell, doc_seeds, None, epochs, device), data_root, results,
                                    train=train_splits[cell.dataset], echo=echo)
                for cell in chosen if cell.choose}
    # the printed report: the classes and seeds this command asked for
    asked = {cell: {(t.normal, t.seed) for t in tasks[cell]} for cell in doc_runs}
    chosen_runs = {cell: [r for r in runs if (r["normal_class"], r["seed"]) in asked[cell]]
                   for cell, runs in doc_runs.items()}
    text = suite_report(suite, chosen, tasks, results, chosen_runs, options)
    name = f"reproduce-{suite}" + ("" if epochs is None else f"-e{epochs}") + (f"-{options_tag(options)}" if options else "")
    path = Path(results) / f"{name}.md"
    fresh = {c.title: cell_section(c, doc_tasks[c], results, doc_runs.get(c)) for c in chosen}
    declared = cells(suite) if suite in suites() else []
    if options and declared:
        declared = with_options(declared, options)[0]
    write_text(path, suite_document(suite, declared, fresh, path, options))
    return Reproduction(chosen, tasks, summary, skipped, text)


def _sections(text: str) -> dict[str, str]:
    """The cell sections of a suite file by title (a video cell has one per normalisation, under
    one title), leaving out the header and the tables that cannot be run."""
    out: dict[str, str] = {}
    for part in ("\n" + text).split("\n## ")[1:]:
        title, section = part.split("\n", 1)[0], "## " + part.rstrip("\n")
        if not title.endswith(" — not run"):
            out[title] = f"{out[title]}\n\n{section}" if title in out else section
    return out


def suite_document(suite: str, declared: list[Cell], fresh: dict[str, str], path: Path,
                   options: dict[str, Any] | None = None) -> str:
    """The suite's file: a section per cell, in the suite's order (`declared`; a suite of one's
    own: the earlier file's order, then the new cells), each the `fresh` one of this run, else
    the one an earlier run wrote into `path`, else a line saying it has not been run."""
    old = _sections(path.read_text(encoding="utf-8")) if path.is_file() else {}
    # an earlier file's "not run" line is no result: this version's own wording replaces it
    old = {t: v for t, v in old.items() if "\n\nNot run by `" not in v}
    if declared:
        titles = [c.title for c in declared]
        unrun = {c.title: f"## {c.title}\n\nPaper: {c.paper or 'no value declared'}.\n\n"
                          f"Not run by `{_command(suite, options)}` yet." for c in declared}
    else:
        titles, unrun = [*old, *(t for t in fresh if t not in old)], {}
    parts = [fresh.get(t) or old.get(t) or unrun[t] for t in titles]
    return "\n\n".join([_suite_header(suite, options), *parts, *_pending_sections(suite)]) + "\n"


def _pending_sections(suite: str) -> list[str]:
    return [f"## {p['table']} — not run\n\n{p['reason']}." for p in pending(suite)]


def _command(suite: str, options: dict[str, Any] | None = None) -> str:
    """The command that writes a suite's file (with `--option` for each extra option)."""
    given = [f"--option {t}" for t in options_tag(options).split(",")] if options else []
    return " ".join([f"oneclass reproduce {suite}", *given])


def _suite_header(suite: str, options: dict[str, Any] | None = None) -> str:
    title = suites().get(suite, suite)
    return (f"# Reproduction: {suite}" + (f" ({options_tag(options)})" if options else "")
            + f"\n\n{title}. AUROC per normal class, mean ± standard deviation over "
            f"seeds; the paper's value beside ours. Written by `{_command(suite, options)}`"
            + (": every cell whose method takes these options, with them (runs of their own)." if options else "."))


def _finished(task: evaluation.RunTask) -> list[dict[str, Any]]:
    return [r for r in (evaluation.read_result(p, i) for p, i in zip(task.paths, task.identities)) if r is not None]


def suite_report(suite: str, chosen: list[Cell], tasks: dict[Cell, list[evaluation.RunTask]],
                 results: str | Path, chosen_runs: dict[Cell, list[dict[str, Any]]] | None = None,
                 options: dict[str, Any] | None = None) -> str:
    """Markdown: for each cell, ours (mean ± std over seeds) beside the paper's value (a choice
    cell: its choice records, `chosen_runs`)."""
    parts = [cell_section(cell, tasks[cell], results, (chosen_runs or {}).get(cell)) for cell in chosen]
    return "\n\n".join([_suite_header(suite, options), *parts, *_pending_sections(suite)]) + "\n"


def cell_section(cell: Cell, tasks: list[evaluation.RunTask], results: str | Path,
                 chosen_runs: list[dict[str, Any]] | None = None) -> str:
    """One cell's section: its table of finished runs beside the paper's value."""
    from .report import _markdown, _settings, fraction_table, group_table, video_budget, video_table
    runs = chosen_runs if cell.choose else [r for t in tasks for r in _finished(t)]
    runs = runs or []
    missing = sum(1 for t in tasks if len(_finished(t)) < len(t.paths))
    head = f"## {cell.title}\n\nPaper: {cell.paper or 'no value declared'}."
    if not runs:
        return f"{head}\n\nNo finished runs yet ({missing} to do)."
    note = f"\n\n{missing} run(s) of this cell are not finished; the table shows the others." if missing else ""
    if cell.protocol == "outlier-fraction":
        return f"{head}{note}\n\n{fraction_table(runs)}"
    if cell.protocol == "video":  # one table per normalisation of the frame scores
        parts = []
        for group in evaluation.iter_groups(runs).values():
            header, rows, notes = video_table(group)
            text = (f"{head}{note}\n\nNormalisation: {group[0]['protocol_info']['normalisation']}; "
                    f"{video_budget(group[0])}; {_settings(group)}\n\n{_markdown(header, rows)}")
            parts.append(text + ("\n\nNotes: " + "; ".join(notes) + "." if notes else ""))
        return "\n\n".join(parts)
    header, rows, notes = group_table(runs)
    text = f"{head}{note}\n\n{_settings(runs)}\n\n{_markdown(header, rows)}"
    if notes:
        text += "\n\nPaper values: " + "; ".join(notes) + "."
    return text
