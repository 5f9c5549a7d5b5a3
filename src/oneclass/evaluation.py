"""Cached evaluation: one JSON per (method, dataset, protocol, class, seed) run.

A finished run's JSON is written atomically and never recomputed; an unfinished one resumes
from its last epoch checkpoint, so a long benchmark can be stopped and continued across
sessions. Every score component of a method is evaluated, not only its headline."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from . import metrics, protocols
from .data import load as load_dataset, source_of
from .detector import Detector, resolve_device, versions
from .errors import OneClassError
from .fileio import write_json
from .registry import create, preset_for


SELECTION_SIZE = 150  # inliers and outliers each, as ALOCC and OLED pick epochs


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


def _protocol_variants(spec: EvalSpec) -> list[dict[str, Any]]:
    """Protocol options, one dict per variant that shares a trained model."""
    if spec.protocol == "outlier-fraction":
        return [{"outlier_fraction": float(p)} for p in spec.outlier_fractions]
    return [{}]


def _variant_tag(options: dict[str, Any]) -> str:
    return "".join(f"-p{v:g}" if k == "outlier_fraction" else f"-{k}{v}" for k, v in sorted(options.items()))


def _options_tag(options: dict[str, Any]) -> str:
    return "".join(f"_{k}={v}" for k, v in sorted(options.items()))


def run_path(results: Path, spec: EvalSpec, preset: str, epochs: Any, normal: int, seed: int,
             variant: dict[str, Any]) -> Path:
    group = f"{spec.method}{_options_tag(spec.options)}__{spec.dataset}__{spec.protocol}{_variant_tag(variant)}__e{epochs}"
    return results / group / f"class{normal}_seed{seed}.json"


def read_result(path: Path) -> dict[str, Any] | None:
    """A finished run, or None when absent or unreadable (a damaged file is redone)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "metrics" in data else None


def _score_and_measure(det: Detector, split: protocols.Split, val_scores: dict[str, np.ndarray]) -> dict[str, Any]:
    t0 = time.perf_counter()
    comps = det.score_components(split.test.images)
    seconds = time.perf_counter() - t0
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
    return {"metrics": results, "score_seconds": seconds,
            "score_images_per_second": len(split.test) / max(seconds, 1e-9)}


def evaluate(spec: EvalSpec, data_root: str | Path | None, results: str | Path, *,
             progress: bool = True, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every missing run of `spec`, return all its runs (finished before or now)."""
    results = Path(results)
    preset = spec.preset or preset_for(spec.method, spec.dataset)
    probe = create(spec.method, preset, epochs=spec.epochs, **spec.options)
    epochs = probe.config.get("epochs", "na")
    train, test = load_dataset(spec.dataset, data_root)
    classes = spec.classes if spec.classes is not None else list(range(len(train.classes)))
    device = resolve_device(spec.device)
    out: list[dict[str, Any]] = []
    for normal in classes:
        normal = train.class_index(normal)
        for seed in spec.seeds:
            variants = _protocol_variants(spec)
            paths = [run_path(results, spec, preset, epochs, normal, seed, v) for v in variants]
            done = [read_result(p) for p in paths]
            if all(d is not None for d in done):
                changed = config_changes(done[0].get("config", {}), probe.config)
                note = (f" (with another configuration than the current defaults: {', '.join(changed)}; "
                        "delete the file to redo it)") if changed else ""
                echo(f"skip {paths[0].parent.name}/{paths[0].name}: already finished{note}")
                out += done
                continue
            det = create(spec.method, preset, epochs=spec.epochs, seed=seed, device=str(device), **spec.options)
            labelled = det.config.get("select") == "val_auroc"  # epoch picked on labelled outliers
            splits = [protocols.make(spec.protocol, train, test, normal, seed, **v,
                                     **({"selection": SELECTION_SIZE} if labelled else {})) for v in variants]
            stem = paths[0].parent / "_work" / paths[0].stem
            echo(f"run {spec.method} on {spec.dataset}/{spec.protocol} class {normal} "
                 f"({train.classes[normal]}) seed {seed}, {epochs} epochs, {device}")
            t0 = time.perf_counter()
            fit_options = _fit_options(det, stem, progress)
            if labelled:
                fit_options["selection"] = (splits[0].selection.images, splits[0].selection_labels)
            det.fit(splits[0].train.images, splits[0].val.images, **fit_options)
            train_seconds = time.perf_counter() - t0
            val_scores = det.score_components(splits[0].val.images)
            for path, split, variant, previous in zip(paths, splits, variants, done):
                if previous is not None:
                    out.append(previous)
                    continue
                record = {
                    "method": spec.method, "preset": preset, "dataset": spec.dataset,
                    "data_source": source_of(spec.dataset, data_root), "protocol": spec.protocol,
                    "protocol_info": split.info, "normal_class": normal, "normal_class_name": train.classes[normal],
                    "seed": seed, "epochs": epochs, "device": str(device),
                    "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "torch_threads": torch.get_num_threads(), "versions": versions(), "config": det.config,
                    "options": spec.options, "headline": det.headline,
                    "train_seconds": train_seconds,
                    "train_images_per_second": det.fit_info.get("train_images_per_second"),
                    "fit": {k: v for k, v in det.fit_info.items() if k != "history"},
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    **_score_and_measure(det, split, val_scores),
                }
                write_json(path, record)
                out.append(record)
                head = record["metrics"][det.headline]["auroc"]
                echo(f"  -> {path.parent.name}/{path.name}: AUROC({det.headline}) {head:.4f}")
            ckpt = stem.with_suffix(".ckpt")
            if ckpt.exists():
                ckpt.unlink()  # the run is finished; its JSON (and log) is what stays
    return out


def config_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose value differs between a finished run's config and what would run now (a
    default changed since): such a run is kept, since it is what was measured, but said so.
    Keys on one side only are left out: an option added later (its default keeps the old
    behaviour) or a setting the method no longer has."""
    return [f"{k} {stored[k]!r} → {current[k]!r}" for k in sorted(set(stored) & set(current))
            if stored[k] != current[k]]


def _fit_options(det: Detector, stem: Path, progress: bool) -> dict[str, Any]:
    from .neural import NeuralDetector
    if not isinstance(det, NeuralDetector):
        return {}
    stem.parent.mkdir(parents=True, exist_ok=True)
    return {"checkpoint": stem.with_suffix(".ckpt"), "resume": True,
            "log_path": stem.with_suffix(".log.jsonl"), "progress": progress}


def collect(results: str | Path) -> list[dict[str, Any]]:
    """Every finished run under a results folder."""
    runs = []
    for path in sorted(Path(results).rglob("*.json")):
        if "_work" in path.parts or "superseded" in path.parts:  # superseded: kept, not reported
            continue
        data = read_result(path)
        if data is not None and "method" in data:
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
        return [kind(p) for p in text.split(",") if p.strip()]
    except ValueError as e:
        raise OneClassError(f"cannot read {what} from {text!r}: give comma-separated numbers") from e


def iter_groups(runs: Iterable[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        key = (r["method"], json.dumps(r.get("options", {}), sort_keys=True), r["dataset"], r["protocol"],
               r["protocol_info"].get("outlier_fraction"), r["epochs"])
        groups.setdefault(key, []).append(r)
    return groups
