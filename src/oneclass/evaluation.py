"""Cached evaluation: one JSON per run, keyed by everything that changes its result.

A run is one (method, preset, resolved configuration, dataset and its source, protocol and its
variant, normal class, seed). Its JSON lives at
`<results>/<readable group name>__<key>/class<c>_seed<s>.json`, where `<key>` is a short hash of
that identity (`run_identity`), so a run under another preset, option value, default or data
source never answers for this one. A finished run is written atomically and never recomputed;
an unfinished one resumes from its last epoch checkpoint, so a long benchmark can be stopped
and continued across sessions. Every score component of a method is evaluated, not only its
headline.

The work is split so that it can run anywhere: `plan` lists the runs of a spec and which are
finished, `execute` trains and scores one run and returns its records (it writes no result),
`store` writes them. `evaluate` does the three in one process; `oneclass reproduce` runs
`execute` as Ray tasks and stores on the driver."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from . import metrics, protocols
from .data import folder_in_colour, is_video as is_video_dataset, load as load_dataset, model_shaped, source_of
from .detector import Detector, canonical_option, check_seed, cpu_name, resolve_device, versions
from .errors import DataError, OneClassError
from .fileio import atomic_open, write_json
from .maps import examples_png
from .neural import NeuralDetector, checked_watch_every, is_watched_epoch
from .registry import create, detector_class, preset_for
from .score_store import ScoreStore, remove_checkpoint, store_path
from .training import EXECUTION_ONLY, logged_epoch, numeric_config


SELECTION_SIZE = 150  # inliers and outliers each, as ALOCC and OLED pick epochs
RUN_KEY_VERSION = 1


@dataclass
class EvalSpec:
    method: str
    dataset: str
    protocol: str = "standard"
    classes: list[int] | None = None          # None: every class of the dataset
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: int | None = None                  # None: the preset's
    outlier_fractions: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5])
    device: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)  # method options (preset overrides)
    preset: str | None = None
    # settings chosen per class on the labelled selection set (`choice`): option -> candidate values
    choose: dict[str, list[Any]] = field(default_factory=dict)
    # log each component's test AUROC after every epoch, for diagnosis only (`WATCH_NOTE`)
    watch_test: bool = False
    # with watch_test: after every Nth epoch and the last only (scoring a test split each epoch can
    # cost as much as the epoch itself)
    watch_every: int = 1


WATCH_NOTE = ("each component's AUROC on the test split after every epoch, or every `every`-th and the last "
              "(None: not watched; normalised components min-max scaled over the test split, the attention "
              "paper's eq. 8), logged for diagnosis only: it chose no epoch and no setting; the run's metrics "
              "are those of its own epoch choice")


# ---- run identity ------------------------------------------------------------------------
def run_identity(method: str, preset: str, config: dict[str, Any], dataset: str, data_source: str,
                 protocol: str, variant: dict[str, Any]) -> dict[str, Any]:
    """Everything that changes a run's numbers, but its class and seed (they name the file)."""
    try:
        later = detector_class(method).added_later
    except OneClassError:
        later = {}
    return {"key_version": RUN_KEY_VERSION, "method": method, "preset": preset,
            "config": dict(sorted(canonical_config(method, preset, numeric_config(config, later)).items())),
            "dataset": dataset, "data_source": data_source, "protocol": protocol,
            "protocol_options": dict(sorted(variant.items()))}


def canonical_config(method: str, preset: str, config: dict[str, Any]) -> dict[str, Any]:
    """`config` with every option in its own type (`detector.canonical_option`: `w_inf=1` is 1.0),
    so a setting keys one run however it was written, in records of older versions too."""
    try:
        cls = detector_class(method)
    except OneClassError:
        return dict(config)
    defaults = {**cls.defaults, **cls.presets.get(preset, {})}
    return {k: canonical_option(v, defaults.get(k), cls.option_types.get(k)) for k, v in config.items()}


def run_key(identity: dict[str, Any]) -> str:
    """A short, stable hash of a run identity (10 hex digits)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _variant_tag(options: dict[str, Any]) -> str:
    return "".join(f"-p{v:g}" if k == "outlier_fraction" else f"-{v}" if k == "normalisation" else f"-{k}{v}"
                   for k, v in sorted(options.items()))


def _options_tag(options: dict[str, Any]) -> str:
    # chosen settings by name only (`_choose=noise_std+w_inf`): their values are in the key
    return "".join(f"_{k}={'+'.join(v) if isinstance(v, dict) else v}" for k, v in sorted(options.items()))


@lru_cache(maxsize=None)
def _preset_defaults(method: str, preset: str) -> dict[str, Any]:
    return detector_class(method)(preset, device="cpu").config


def distinct_options(method: str, preset: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` less those given at the preset's own value: `--option likelihood=gaussian`
    where that is the default is the default run, and must find it in the cache (same key, same
    folder, one row in the report) rather than train it again under another name."""
    try:
        defaults = _preset_defaults(method, preset)
    except (OneClassError, ValueError, TypeError):
        return dict(options)
    options = canonical_config(method, preset, options)  # `w_adv=0` and `w_adv=0.0` name one folder
    return {k: v for k, v in options.items() if not (k in defaults and defaults[k] == v)}


def group_name(identity: dict[str, Any], options: dict[str, Any]) -> str:
    """`<method>[_opt=v…][_preset=p]__<dataset>__<protocol>[-variant]__e<epochs>__<key>`: readable
    at a glance, unique by the key. `options` are those a run was given away from its defaults
    (`distinct_options`, applied when the run is planned), so a name never changes with the code."""
    method, dataset = identity["method"], identity["dataset"]
    try:
        default_preset = preset_for(method, dataset)
    except OneClassError:
        default_preset = None
    preset = f"_preset={identity['preset']}" if identity["preset"] != default_preset else ""
    epochs = identity["config"].get("epochs", "na")
    return (f"{method}{_options_tag(options)}{preset}__{dataset}__{identity['protocol']}"
            f"{_variant_tag(identity['protocol_options'])}__e{epochs}__{run_key(identity)}")


def result_path(results: str | Path, identity: dict[str, Any], options: dict[str, Any], normal: int,
                seed: int) -> Path:
    return Path(results) / group_name(identity, options) / f"class{normal}_seed{seed}.json"


def record_path(results: str | Path, record: dict[str, Any]) -> Path:
    """Where a finished run's record belongs (from its own stored identity)."""
    return result_path(results, record["run_identity"], record.get("options", {}), record["normal_class"],
                       record["seed"])


def read_result(path: Path, identity: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A finished run, or None when absent, unreadable (a damaged file is redone) or, given
    `identity`, of another identity."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and "metrics" in data):
        return None
    if identity is not None and data.get("run_key") != run_key(identity):
        return None
    return data


# ---- plan, execute, store ------------------------------------------------------------------
@dataclass
class RunTask:
    """One model to train: a (class, seed) of a spec, and the protocol variants it is scored on
    (the outlier-fraction protocol scores one model at several fractions)."""
    spec: EvalSpec
    preset: str
    normal: int
    seed: int
    variants: list[dict[str, Any]]
    identities: list[dict[str, Any]]
    paths: list[Path]
    done: list[dict[str, Any] | None]

    @property
    def finished(self) -> bool:
        return all(d is not None for d in self.done)

    @property
    def name(self) -> str:
        return f"{self.paths[0].parent.name}/{self.paths[0].name}"

    @property
    def label(self) -> str:
        """Short and readable, for progress lines."""
        opts = _options_tag(self.spec.options)
        return f"{self.spec.method}{opts} {self.spec.dataset}/{self.spec.protocol} class {self.normal} seed {self.seed}"


@dataclass
class RunOutcome:
    """What `execute` hands back: the records to store and the run's compressed epoch log."""
    records: list[dict[str, Any]]
    log_gz: bytes | None = None
    # extra files of a record, beside its JSON: (record index, path in its group folder, bytes)
    files: list[tuple[int, str, bytes]] = field(default_factory=list)


def _protocol_variants(spec: EvalSpec) -> list[dict[str, Any]]:
    """Protocol options, one dict per variant that shares a trained model."""
    if spec.protocol == "outlier-fraction":
        return [{"outlier_fraction": float(p)} for p in spec.outlier_fractions]
    if spec.protocol == "video":
        # scores on a common scale from training data (label-free) and, where a method combines
        # normalised components, also per test clip as LSA's video protocol does
        per_clip = [{"normalisation": "per-clip"}] if getattr(detector_class(spec.method), "normalised", ()) else []
        return [{"normalisation": "validation"}] + per_clip
    return [{}]


def check_spec(spec: EvalSpec) -> tuple[str, dict[str, Any]]:
    """The preset and resolved config of `spec`'s runs; an unknown method, protocol, option or a
    protocol that does not fit the dataset is refused here, before any data is read."""
    known = [*protocols.PROTOCOLS, "video"]
    if spec.protocol not in known:
        raise OneClassError(f"unknown protocol {spec.protocol!r}; known protocols: {', '.join(known)}")
    if (spec.protocol == "video") != is_video_dataset(spec.dataset):
        raise OneClassError(f"protocol {spec.protocol!r} does not apply to dataset {spec.dataset!r}: video "
                            "datasets (ped2) take protocol 'video', image datasets the others")
    if (spec.protocol == "mvtec") != (spec.dataset == "mvtec"):
        raise OneClassError(f"protocol {spec.protocol!r} does not apply to dataset {spec.dataset!r}: the MVTec AD "
                            "layout (dataset 'mvtec') takes protocol 'mvtec', which no other dataset can")
    if spec.watch_test and (spec.protocol in ("video", "outlier-fraction")
                            or "select" not in getattr(detector_class(spec.method), "defaults", {})):
        raise OneClassError(f"--watch-test logs one test split's AUROC per epoch: {spec.method} on the "
                            f"{spec.protocol} protocol has no epochs or several test sets to watch")
    checked_watch_every(spec.watch_every)
    for seed in spec.seeds:
        check_seed(seed)
    if spec.dataset == "folder" and spec.preset is None:
        raise OneClassError("dataset 'folder' takes the preset its images call for: give one (cifar10 for RGB "
                            "32×32, mnist for grey 28×28), or let `evaluate` choose it from the images")
    preset = spec.preset or preset_for(spec.method, spec.dataset)
    return preset, create(spec.method, preset, epochs=spec.epochs, device="cpu", **spec.options).config


def default_preset(method: str, dataset: str, data_root: str | Path | None) -> str:
    """The preset a dataset calls for (`preset_for`); for the user's labelled folder (dataset
    'folder'), cifar10 (RGB 32×32) when its training images are in colour, else mnist (grey
    28×28), as `fit --train-dir` chooses."""
    if dataset != "folder":
        return preset_for(method, dataset)
    from .data import data_root_path
    from .data.folder import check_labelled_folder
    root = check_labelled_folder(data_root_path(data_root))
    return preset_for(method, "cifar10" if folder_in_colour(root) else "mnist")


def data_shape(spec: EvalSpec) -> dict[str, int]:
    """The input at which `spec`'s dataset is decoded: its model's channels and size for the
    folder datasets (`model_shaped`), else nothing (the dataset's own; each model conforms it)."""
    if not model_shaped(spec.dataset):
        return {}
    config = check_spec(spec)[1]
    return {"channels": int(config["channels"]), "size": int(config["size"])}


def load_data(spec: EvalSpec, data_root: str | Path | None) -> tuple[Any, Any]:
    """(train, test) of `spec`'s dataset, decoded as its runs read it (`data_shape`)."""
    return load_dataset(spec.dataset, data_root, **data_shape(spec))


def plan(spec: EvalSpec, data_root: str | Path | None, results: str | Path,
         train: Any = None) -> list[RunTask]:
    """Every run of `spec`, each with its result paths and the records already finished.
    `train` (the dataset's training split) saves loading it again to resolve class names."""
    preset, config = check_spec(spec)
    spec = replace(spec, options=distinct_options(spec.method, preset, spec.options))
    if train is None:
        train, _ = load_data(spec, data_root)
    source = source_of(spec.dataset, data_root)
    variants = _protocol_variants(spec)
    identities = [run_identity(spec.method, preset, config, spec.dataset, source, spec.protocol, v)
                  for v in variants]
    if spec.protocol == "video":  # one model per seed: the normal class is the training footage
        if spec.classes not in (None, [0], ["0"], ["normal"]):
            raise OneClassError("a video dataset has no classes to choose: leave --classes out")
        classes: list[Any] = [0]
    else:
        classes = spec.classes if spec.classes is not None else list(range(len(train.classes)))
    tasks = []
    for normal in classes:
        normal = train.class_index(normal) if spec.protocol != "video" else 0
        for seed in spec.seeds:
            paths = [result_path(results, ident, spec.options, normal, seed) for ident in identities]
            done = [read_result(p, ident) for p, ident in zip(paths, identities)]
            if spec.watch_test:  # a run finished without the watched epochs has none to give: run it again
                done = [d if d is not None and _watches(d, spec.watch_every) else None for d in done]
            tasks.append(RunTask(replace(spec, classes=[normal], seeds=[seed]), preset, normal, int(seed),
                                 variants, identities, paths, done))
    return tasks


def execute(task: RunTask, data_root: str | Path | None, work_dir: str | Path | None = None, *,
            progress: bool = True, echo: Callable[[str], None] = print, data: Any = None) -> RunOutcome:
    """Train and score one run; return its records (nothing is written but the checkpoint and
    epoch log under `work_dir`, from which an interrupted run resumes). `data`: the dataset's
    (train, test), when already loaded."""
    spec, normal, seed, variants = task.spec, task.normal, task.seed, task.variants
    train, test = data if data is not None else load_data(spec, data_root)
    device = resolve_device(spec.device)
    det = create(spec.method, task.preset, epochs=spec.epochs, seed=seed, device=str(device), **spec.options)
    if spec.protocol == "video":
        return _execute_video(task, det, train, test, work_dir, progress=progress, echo=echo)
    labelled = det.config.get("select") == "val_auroc"  # epoch picked on labelled outliers
    splits = [protocols.make(spec.protocol, train, test, normal, seed, **v,
                             **({"selection": SELECTION_SIZE} if labelled else {})) for v in variants]
    epochs = det.config.get("epochs", "na")
    echo(f"run {spec.method} on {spec.dataset}/{spec.protocol} class {normal} ({train.classes[normal]}) "
         f"seed {seed}, {epochs} epochs, {device}")
    stem = _work_stem(task, work_dir)
    t0 = time.perf_counter()
    fit_options = _fit_options(det, stem, progress)
    if labelled:
        fit_options["selection"] = (splits[0].selection.images, splits[0].selection_labels)
    if spec.watch_test:
        fit_options["watch"] = (splits[0].test.images, splits[0].test_labels)
        fit_options["watch_every"] = spec.watch_every
    det.fit(splits[0].train.images, splits[0].val.images, **fit_options)
    train_seconds = time.perf_counter() - t0
    val_scores = det.validation_scores  # fit scored them, for its threshold
    records, files = [], []
    for split, ident, previous in zip(splits, task.identities, task.done):
        if previous is not None:
            continue
        measured = _score_and_measure(det, split, val_scores)
        if "score_resumed" in measured:
            echo(f"  scoring resumed: {measured['score_resumed']['images']:,} of {len(split.test):,} test images "
                 "were scored by an earlier attempt")
        strip = examples_png(det, split.test.images, measured["examples"])
        records.append({
            **_base_record(task, det, ident, device, train_seconds),
            "protocol_info": split.info, "normal_class": normal, "normal_class_name": train.classes[normal],
            **measured, **(_watched(det, spec.watch_every) if spec.watch_test else {}),
        })
        files.append((len(records) - 1, f"examples/{task.paths[0].stem}.png", strip))
    return RunOutcome(records, _finish_work(stem), files)


def _watched(det: Detector, every: int) -> dict[str, Any]:
    """The watched test AUROC of every epoch, one list per component (None for an epoch not
    watched: between every `every`-th, or trained before a resume that did not watch)."""
    history = det.fit_info.get("history", [])
    by_epoch = {k: [h.get("watch", {}).get(k) for h in history] for k in det.components}
    return {"watched_test_auroc": {"note": WATCH_NOTE, "every": every, "epochs": [h["epoch"] for h in history],
                                   "by_epoch": by_epoch}}


def _watches(record: dict[str, Any], every: int) -> bool:
    """Whether a finished run's watch holds every epoch a watch every `every`-th would score."""
    watched = record.get("watched_test_auroc")
    if watched is None:
        return False
    epochs, values = watched["epochs"], next(iter(watched["by_epoch"].values()))
    return all(v is not None for e, v in zip(epochs, values) if is_watched_epoch(e, every, e == epochs[-1]))


def _work_stem(task: RunTask, work_dir: str | Path | None) -> Path | None:
    return (Path(work_dir) / task.paths[0].parent.name / "_work" / task.paths[0].stem
            if work_dir is not None else None)


@dataclass(frozen=True)
class Kept:
    """What an unfinished run keeps in its work folder and resumes from (neither: a checkpoint
    only)."""
    epochs: int  # epochs its log holds
    images: int  # images whose scores are kept, over every scoring pass

    def __str__(self) -> str:
        kept = []
        if self.epochs:
            kept.append(f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} logged")
        if self.images:
            kept.append(f"scores of {self.images:,} images kept")
        return ", ".join(kept) or "a checkpoint"


def kept_progress(task: RunTask, work_dir: str | Path) -> Kept | None:
    """What an unfinished run has kept in `work_dir` (the results folder); None for a run not
    started."""
    stem = _work_stem(task, work_dir)
    assert stem is not None
    epochs = 0
    log = stem.with_suffix(".log.jsonl")
    if log.is_file():
        # a line cut off by the kill is no epoch: the resumed run drops it too
        logged = [e for e in map(logged_epoch, log.read_text().splitlines()) if e is not None]
        epochs = logged[-1] if logged else 0
    ckpt = stem.with_suffix(".ckpt")
    images = ScoreStore(store_path(ckpt), model="").kept_images()
    if not (epochs or images or ckpt.is_file()):
        return None
    return Kept(epochs, images)


def under_way(task: RunTask, work_dir: str | Path) -> str | None:
    """What an unfinished run keeps, as a dry run lists it: the epochs its log holds and the
    images whose scores are kept; None for a run not started."""
    kept = kept_progress(task, work_dir)
    return None if kept is None else str(kept)


def _finish_work(stem: Path | None) -> bytes | None:
    """The run is finished: its compressed epoch log is handed back, its checkpoint removed."""
    log_gz = None
    if stem is not None:
        log = stem.with_suffix(".log.jsonl")
        if log.is_file():
            log_gz = gzip.compress(log.read_bytes(), mtime=0)
            log.unlink()
        remove_checkpoint(stem.with_suffix(".ckpt"))  # the run is finished; its JSON and log are what stay
        _remove_if_empty(stem.parent)
    return log_gz


def _base_record(task: RunTask, det: Detector, ident: dict[str, Any], device: torch.device,
                 train_seconds: float) -> dict[str, Any]:
    spec = task.spec
    return {
        "method": spec.method, "preset": task.preset, "dataset": spec.dataset,
        "data_source": ident["data_source"], "protocol": spec.protocol,
        "seed": task.seed, "epochs": det.config.get("epochs", "na"), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "host_cpu": cpu_name(), "torch_threads": torch.get_num_threads(), "versions": versions(), "config": det.config,
        "options": spec.options, "run_identity": ident, "run_key": run_key(ident), "headline": det.headline,
        "train_seconds": train_seconds,
        "train_images_per_second": det.fit_info.get("train_images_per_second"),
        "fit": {k: v for k, v in det.fit_info.items() if k != "history"},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _execute_video(task: RunTask, det: Detector, train: Any, test: Any, work_dir: str | Path | None, *,
                   progress: bool, echo: Callable[[str], None]) -> RunOutcome:
    """The video protocol: fit on the training clips' samples, score every test frame, frame-level
    metrics pooled over all test frames (and per clip), pixel-level AUROC where masks exist."""
    from . import video
    spec, seed = task.spec, task.seed
    device = det.device
    epochs = det.config.get("epochs", "na")
    echo(f"run {spec.method} on {spec.dataset}/video seed {seed}, {epochs} epochs, {device}")
    stem = _work_stem(task, work_dir)
    fit_options = _fit_options(det, stem, progress)
    selection_info: dict[str, Any] = {"label_free": True}
    if det.config.get("select") == "val_auroc":  # paper-style: the epoch is picked on test patches
        images, labels, selection_info = video.labelled_selection(det, train, test, seed)
        fit_options["selection"] = (images, labels)
    t0 = time.perf_counter()
    samples = video.fit_video(det, train, seed=seed, **fit_options)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    scored, pixel_maps, masks = [], [], []
    step = 4  # pixel AUROC on every 4th pixel: the maps are patch-coarse, the masks large
    for clip in test.clips:
        cs = video.score_clip(det, clip)
        scored.append(cs)
        if clip.masks is not None:
            pixel_maps.append(video.pixel_map(cs, clip.frames.shape[1:])[:, ::step, ::step])
            masks.append(clip.masks[:, ::step, ::step])
        if progress:
            echo(f"  scored clip {clip.name}: {len(clip)} frames, {cs.samples} samples, {cs.seconds:.1f} s")
    score_seconds = time.perf_counter() - t1
    labels = [clip.labels for clip in test.clips]
    pixel = video.pixel_auroc(masks, pixel_maps, step=1) if masks else {"pixel_auroc": None, "note": "no masks"}
    if masks:
        pixel.update(pixel_grid_step=step, score=det.headline, scale="validation-normalised patch scores",
                     note="no seed paper reports pixel-level AUROC on Ped2")
    n_frames = sum(len(c) for c in test.clips)
    records, files = [], []
    for variant, ident, previous in zip(task.variants, task.identities, task.done):
        if previous is not None:
            continue
        norm = variant["normalisation"]
        per_clip = ([cs.final for cs in scored] if norm == "validation"
                    else video.normalise_per_clip(det, [cs.raw for cs in scored]))
        results = {k: video.frame_metrics(labels, [c[k] for c in per_clip]) for k in det.components}
        n_abnormal = int(sum(l.sum() for l in labels))
        info = {"protocol": "video", "normal_class": 0, "normal_class_name": "normal", "seed": seed,
                "normalisation": norm, "auroc": "pooled over all test frames (micro)",
                "auroc_macro": "mean over the test clips with both normal and abnormal frames",
                "smoothing": "none", "aggregation": ("mean over the windows containing a frame, a window the "
                                                     "mean of its patches" if det.config["video"] == "clip-patches"
                                                     else "maximum over a frame's patches"),
                "counts": {"train_clips": len(train.clips), "train_frames": train.n_frames,
                           "test_clips": len(test.clips), "test_frames": n_frames,
                           "test_normal": n_frames - n_abnormal, "test_novel": n_abnormal},
                "samples": samples, "ground_truth": test.notes.get("ground_truth"), **selection_info}
        record = {**_base_record(task, det, ident, device, train_seconds), "protocol_info": info,
                  "normal_class": 0, "normal_class_name": "normal", "metrics": results, "pixel_level": pixel,
                  "score_seconds": score_seconds, "score_frames_per_second": n_frames / max(score_seconds, 1e-9),
                  "score_samples_per_second": sum(cs.samples for cs in scored) / max(score_seconds, 1e-9)}
        index = len(records)
        records.append(record)
        name = task.paths[task.variants.index(variant)].stem
        arrays = {f"{cs.name}/{k}": c[k].astype(np.float32) for cs, c in zip(scored, per_clip) for k in c}
        arrays.update({f"{clip.name}/label": clip.labels.astype(np.int8) for clip in test.clips})
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        files.append((index, f"frames/{name}.npz", buf.getvalue()))
        title = f"{spec.method} {det.headline} ({norm}), seed {seed}"
        for cs, c, clip in zip(scored, per_clip, test.clips):
            png = video.clip_plot_png(clip.name, c[det.headline], clip.labels, title)
            files.append((index, f"plots/{name}/clip{clip.name}.png", png))
    return RunOutcome(records, _finish_work(stem), files)


def store(results: str | Path, outcome: RunOutcome, echo: Callable[[str], None] = print) -> list[Path]:
    """Write a run's records (atomically) and its compressed epoch log beside each of them."""
    paths = []
    for record in outcome.records:
        path = record_path(results, record)
        write_json(path, record, compact=True)
        paths.append(path)
        head = record["metrics"][record["headline"]]["auroc"]
        echo(f"  -> {path.parent.name}/{path.name}: AUROC({record['headline']}) {head:.4f}")
    for index, relative, data in outcome.files:
        with atomic_open(paths[index].parent / relative, "wb") as fh:
            fh.write(data)
    for path in paths if outcome.log_gz else []:  # records of one model (its variants) each keep its log
        with atomic_open(log_path(path), "wb") as fh:
            fh.write(outcome.log_gz)
    return paths


def log_path(result: Path) -> Path:
    """The compressed per-epoch log of a finished run."""
    return result.parent / "logs" / f"{result.stem}.log.jsonl.gz"


def read_log(result: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a finished run (empty when it kept no log)."""
    path = log_path(result)
    if not path.is_file():
        return []
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines() if line.strip()]


def evaluate(spec: EvalSpec, data_root: str | Path | None, results: str | Path, *,
             progress: bool = True, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every missing run of `spec` in this process, return all its runs (finished before or now).
    With `spec.choose`, every candidate's runs, then the choice records made from them (`choice`)."""
    from . import choice
    if spec.dataset == "folder" and spec.preset is None:
        spec = replace(spec, preset=default_preset(spec.method, spec.dataset, data_root))
        from .data import data_root_path
        echo(f"preset {spec.preset}: the training images of {data_root_path(data_root)} are "
             f"{'in colour' if spec.preset == 'cifar10' else 'grey'} (--preset to choose another)")
    candidates = choice.candidate_specs(spec) if spec.choose else []
    for checked in [spec, *candidates]:  # a misspelt method or option is said before a dataset is read
        check_spec(checked)
    data = load_data(spec, data_root)
    if spec.choose:
        for candidate in candidates:
            evaluate(candidate, data_root, results, progress=progress, echo=echo)
        return choice.finish(spec, data_root, results, train=data[0], echo=echo)
    out: list[dict[str, Any]] = []
    for task in plan(spec, data_root, results, train=data[0]):
        if task.finished:
            echo(f"skip {task.name}: already finished")
            out += task.done
            continue
        outcome = execute(task, data_root, results, progress=progress, echo=echo, data=data)
        store(results, outcome, echo)
        fresh = iter(outcome.records)
        out += [d if d is not None else next(fresh) for d in task.done]
    return out


def _score_and_measure(det: Detector, split: protocols.Split, val_scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """The run's metrics (every component), the headline's curves, its most and least novel
    test images, and pixel AUROC where the test images have defect masks."""
    t0 = time.perf_counter()
    comps = det.score_components(split.test.images)
    seconds = time.perf_counter() - t0
    # a pass resumed from the run's kept scores: its seconds are those of every image's scoring
    resumed = getattr(det, "scoring_resumed", None)
    seconds += resumed["earlier_seconds"] if resumed else 0.0
    results: dict[str, Any] = {}
    for name, s in comps.items():
        m = metrics.evaluate(split.test_labels, s)
        # a deployable threshold: the 95th percentile of the normal validation scores
        thr = float(np.quantile(val_scores[name], 0.95))
        m["threshold_val_q95"] = thr
        m["f1_at_val_q95"] = metrics.f1_at(split.test_labels, s, thr)
        if det.name == "alocc" and name in ("d_x", "d_rx"):
            m["f1_at_tau_0.5"] = metrics.f1_at(split.test_labels, s, 0.5)  # 1 − D > 0.5 ⇔ D < τ
            m["f1_normal_at_tau_0.5"] = metrics.f1_at(split.test_labels, s, 0.5, positive="normal")
        results[name] = m
    out = {"metrics": results, "score_seconds": seconds,
           "score_images_per_second": len(split.test) / max(seconds, 1e-9),
           "curves": metrics.curves(split.test_labels, comps[det.headline])}
    if resumed:
        out["score_resumed"] = resumed
    by_class = novel_class_auroc(split, comps[det.headline])
    if by_class is not None:
        out["headline_auroc_by_novel_class"] = by_class
    if split.test.masks is not None:
        out["pixel_level"] = pixel_level(det, split.test)
    order = np.argsort(-comps[det.headline], kind="stable")
    extremes = {"most novel": order[:EXAMPLES], "least novel": order[::-1][:EXAMPLES]}
    out["examples"] = {k: [{"index": int(i), "score": float(comps[det.headline][i]),
                            "novel": bool(split.test_labels[i])} for i in v] for k, v in extremes.items()}
    return out


def novel_class_auroc(split: protocols.Split, scores: np.ndarray) -> dict[str, float] | None:
    """AUROC of the normal test images against each novel class's alone: which kinds of novelty
    (a defect type, a CIFAR-10 class) a model tells apart and which it confuses with normal. None
    where the test labels are not classes (MVTec's defect flags) or one class is all the novelty."""
    if split.test.novel is not None:
        return None
    classes = split.test.labels.numpy()
    if len(np.unique(classes[split.test_labels == 1])) < 2:
        return None
    return metrics.auroc_by_group(split.test_labels, scores, classes, split.test.classes)


def measure_model(det: Detector, images: Any, novel: Any, groups: Any = None,
                  group_names: list[str] | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A fitted model measured on labelled images (`novel`: 1 = novel), and the scores it gave
    them (`score_components`): every component's metrics, what its threshold does
    (`metrics.at_threshold`, when it has one), and the headline's AUROC against each novel group
    alone when `groups` (e.g. the sub-folder of each image, indexing `group_names`) has several."""
    novel = np.asarray(novel, dtype=np.int64).ravel()
    if not len(novel):
        raise DataError("no labels: measuring a model needs labelled images")
    if novel.min() == novel.max():
        raise DataError(f"all {len(novel)} images are {'novel' if novel[0] else 'normal'}: measuring a model "
                        "needs normal and novel images")
    comps = det.score_components(images)
    if len(comps[det.headline]) != len(novel):
        raise DataError(f"{len(comps[det.headline])} images but {len(novel)} labels")
    out: dict[str, Any] = {"method": det.name, "headline": det.headline,
                           "counts": {"images": len(novel), "normal": int((novel == 0).sum()),
                                      "novel": int(novel.sum())},
                           "metrics": {c: metrics.evaluate(novel, s) for c, s in comps.items()}}
    if det.threshold is not None:
        out["at_threshold"] = metrics.at_threshold(novel, comps[det.headline], det.threshold)
        out["threshold_rule"] = det.threshold_rule
    if groups is not None and len(np.unique(np.asarray(groups)[novel == 1])) > 1:
        out["auroc_by_novel_class"] = metrics.auroc_by_group(novel, comps[det.headline], groups, group_names)
    return out, comps


EXAMPLES = 6  # most and least novel test images kept with a run (indices, scores, a PNG)


def pixel_level(det: Detector, test: Any) -> dict[str, Any]:
    """Pixel AUROC of the headline anomaly map against the defect masks, every pixel of every
    test image pooled (the MVTec AD convention), at the model's input size."""
    if getattr(det, "map_headline", None) is None:
        return {"pixel_auroc": None, "note": f"{det.name} gives no per-pixel map"}
    maps = det.score_maps(test.images)[det.map_headline]
    masks = test.masks.numpy().astype(bool)
    if masks.shape != maps.shape:
        raise OneClassError(f"masks {masks.shape} and maps {maps.shape} differ in size")
    return {"pixel_auroc": metrics.auroc(masks.ravel().astype(np.int64), maps.ravel()), "map": det.map_headline,
            "pixels": int(masks.size), "defect_pixels": int(masks.sum()), "size": list(maps.shape[1:]),
            "note": "every pixel of every test image pooled, at the model's input size"}


def config_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose value differs between a finished run's config and what would run now (a
    default changed since): such a run is kept, since it is what was measured, but said so.
    Keys on one side only are left out: an option added later (its default keeps the old
    behaviour) or a setting the method no longer has; and execution-only settings (scoring batch,
    layout), which pick kernels, not numbers: a new default of those leaves every run current."""
    return [f"{k} {stored[k]!r} → {current[k]!r}" for k in sorted(set(stored) & set(current) - EXECUTION_ONLY)
            if stored[k] != current[k]]


def _fit_options(det: Detector, stem: Path | None, progress: bool) -> dict[str, Any]:
    if not isinstance(det, NeuralDetector):
        return {}
    if stem is None:
        return {"progress": progress}
    stem.parent.mkdir(parents=True, exist_ok=True)
    return {"checkpoint": stem.with_suffix(".ckpt"), "resume": True,
            "log_path": stem.with_suffix(".log.jsonl"), "progress": progress}


def collect(results: str | Path) -> list[dict[str, Any]]:
    """Every finished run under a results folder."""
    runs = []
    for path in sorted(Path(results).rglob("*.json")):
        # superseded: kept, not reported; checks: side experiments with their own tables
        # (scripts/fast_path_check.py), whose runs share identities with the headline runs
        # anchors: the papers' official code run on our splits (scripts/anchors/), beside ours
        if {"_work", "superseded", "checks", "anchors"} & set(path.parts):
            continue
        data = read_result(path)
        if data is not None and "method" in data:
            data["_path"] = str(path)
            runs.append(data)
    return runs


def collect_anchors(results: str | Path) -> list[dict[str, Any]]:
    """Every finished run of a paper's official code under `results`/anchors."""
    runs = []
    for path in sorted((Path(results) / "anchors").rglob("*.json")):
        data = read_result(path)
        if data is not None and data.get("implementation") == "official":
            data["_path"] = str(path)
            runs.append(data)
    return runs


def parse_classes(text: str) -> list[int | str] | None:
    if text.strip().lower() == "all":
        return None
    items: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        items.append(int(part) if part.lstrip("-").isdigit() else part)
    if not items:
        raise OneClassError("no classes given (use e.g. 0,3 or all)")
    return items


def parse_numbers(text: str, kind: Callable[[str], Any], what: str) -> list[Any]:
    try:
        values = [kind(p) for p in text.split(",") if p.strip()]
    except ValueError as e:
        raise OneClassError(f"cannot read {what} from {text!r}: give comma-separated numbers") from e
    if not values:
        raise OneClassError(f"no values given for {what}")
    return values


def iter_groups(runs: Iterable[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Runs of one identity (all its classes and seeds) together."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        key = (r["method"], json.dumps(r.get("options", {}), sort_keys=True), r["dataset"], r["protocol"],
               r["protocol_info"].get("outlier_fraction"), r["epochs"], r.get("run_key", ""))
        groups.setdefault(key, []).append(r)
    return groups


# ---- re-keying results written before run keys ----------------------------------------------
def identity_of(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record's identity, from what it recorded. Keys its config lacks (options added
    since, whose defaults keep the old behaviour) take today's defaults; keys the method no
    longer has are dropped."""
    method, preset = record["method"], record.get("preset") or "mnist"
    config = dict(record.get("config", {}))
    try:
        current = _preset_defaults(method, preset)
    except OneClassError:
        current = config
    config = {k: config.get(k, v) for k, v in current.items()}
    info = record.get("protocol_info", {})
    variant = {"outlier_fraction": float(info["outlier_fraction"])} if record["protocol"] == "outlier-fraction" else {}
    return run_identity(method, preset, config, record["dataset"], record.get("data_source", record["dataset"]),
                        record["protocol"], variant)


def _renamed_options(record: dict[str, Any], ident: dict[str, Any]) -> dict[str, Any]:
    """A record's options less those at today's defaults, where today's code given those options
    makes this very identity (the run `evaluate` would look for); else its options unchanged, so
    an ablation whose other defaults have moved since keeps the name it was run under."""
    options = record.get("options", {})
    fewer = distinct_options(record["method"], ident["preset"], options)
    if json.dumps(fewer, sort_keys=True) == json.dumps(options, sort_keys=True):  # 0 == 0.0, but not in a name
        return options
    epochs = record.get("epochs")
    try:
        config = create(record["method"], ident["preset"], epochs=epochs if isinstance(epochs, int) else None,
                        device="cpu", **fewer).config
    except (OneClassError, ValueError, TypeError):
        return options
    today = run_identity(ident["method"], ident["preset"], config, ident["dataset"], ident["data_source"],
                         ident["protocol"], ident["protocol_options"])
    return fewer if run_key(today) == run_key(ident) else options


def rekey(results: str | Path, echo: Callable[[str], None] = print, dry_run: bool = False) -> list[tuple[Path, Path]]:
    """Move every finished run under `results` to the path its identity keys it by, with its
    epoch log (compressed), its other files (example strips, frame scores, plots) and any
    leftover checkpoint; records gain `run_identity` and `run_key`, and lose options given at
    their default value (`_renamed_options`). A record whose stored identity matches its key keeps
    it. Nothing is overwritten: a clash with a different record is reported and left."""
    results = Path(results)
    moves = []
    for path in sorted(results.rglob("*.json")):
        skipped = ("_work", "superseded", "anchors", "checks", "examples", "frames", "plots", "logs")
        if any(part in skipped for part in path.relative_to(results).parts[:-1]):
            continue
        record = read_result(path)
        if record is None or "method" not in record or "normal_class" not in record:
            continue
        if "choose" in record.get("run_identity", {}):
            continue  # a choice record: keyed by its candidates, refreshed by `evaluate --choose`
        stored = record.get("run_identity")
        if stored and record.get("run_key") == run_key(stored):  # kept, but in today's option types
            ident = {**stored, "config": canonical_config(stored["method"], stored["preset"], stored["config"])}
        else:
            ident = identity_of(record)
        if isinstance(record.get("config"), dict):
            record["config"] = canonical_config(record["method"], ident["preset"], record["config"])
        record["options"] = _renamed_options(record, ident)
        for m in record["metrics"].values():  # written as Infinity before: standard JSON now
            thr = m.get("f1_best_normal_threshold")
            if isinstance(thr, float) and not np.isfinite(thr):
                m["f1_best_normal_threshold"] = None
                m["f1_best_normal_threshold_note"] = "every sample called normal (no finite threshold)"
        record["run_identity"], record["run_key"] = ident, run_key(ident)
        target = record_path(results, record)
        if target == path and record == read_result(path):
            continue
        if target != path and target.exists() and read_result(target) not in (None, record):
            echo(f"clash: {path} and {target} hold different runs of one identity; left in place")
            continue
        moves.append((path, target))
        if dry_run:
            continue
        write_json(target, record, compact=True)
        old_log = path.parent / "_work" / f"{path.stem}.log.jsonl"
        if old_log.is_file():
            with atomic_open(log_path(target), "wb") as fh:
                fh.write(gzip.compress(old_log.read_bytes(), mtime=0))
            old_log.unlink()
        if target != path:
            for extra in _run_files(path):
                moved = target.parent / extra.relative_to(path.parent)
                moved.parent.mkdir(parents=True, exist_ok=True)
                extra.replace(moved)
            path.unlink()
    for folder in sorted({p.parent for p, _ in moves}, reverse=True):
        if not dry_run:
            for sub in sorted(folder.rglob("*"), reverse=True):
                _remove_if_empty(sub)
            _remove_if_empty(folder)
    echo(f"{len(moves)} run(s) re-keyed under {results}")
    return moves


def _run_files(path: Path) -> list[Path]:
    """The files a run keeps beside its record (`store`): log, example strip, frame scores, plots."""
    folder, stem = path.parent, path.stem
    found = [folder / "logs" / f"{stem}.log.jsonl.gz", folder / "examples" / f"{stem}.png",
             folder / "frames" / f"{stem}.npz", *sorted((folder / "plots" / stem).glob("*"))]
    return [p for p in found if p.is_file()]


def _remove_if_empty(folder: Path) -> None:
    """Tidy an emptied work folder; a parallel run that has just written into it keeps it
    (writers create the folder again before each write)."""
    try:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass
