"""The `oneclass` command line. Errors are one line (exit code 1); `--debug` shows tracebacks."""
from __future__ import annotations

import csv
import io
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import __version__
from .errors import OneClassError, UndertrainingWarning


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`--option key=value`; values are read as JSON where they parse (numbers, lists, true)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise OneClassError(f"--option takes key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _parse_choices(pairs: tuple[str, ...]) -> dict[str, list[Any]]:
    """`--choose key=v1,v2`; each value read as JSON where it parses, like --option's."""
    out: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not sep or not key.strip() or not values:
            raise OneClassError(f"--choose takes key=value1,value2, got {pair!r}")
        if key.strip() in out:
            raise OneClassError(f"--choose {key.strip()} is given twice: list its values once")
        out[key.strip()] = [_parse_options((f"v={v}",))["v"] for v in values]
    return out


class _Group(click.Group):
    """Turns library errors into one clear line unless --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():  # restores the caller's warning display afterwards
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except (OneClassError, OSError) as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {_os_error_line(e) if isinstance(e, OSError) else e}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; finished runs and the last epoch checkpoint are kept "
                       "(run again, with --resume for `fit`, to continue)", err=True)
            ctx.exit(130)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """The library's warnings as one line on stderr, like its errors; others as Python shows them."""
    if issubclass(category, UndertrainingWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        click.echo(warnings.formatwarning(message, category, filename, lineno, line), err=True, nl=False)


def _os_error_line(e: OSError) -> str:
    """A file-system error as one line naming the path and, for the common cases, the cause."""
    import errno
    path = e.filename if e.filename is not None else ""
    why = {errno.ENOTDIR: "a part of this path is a regular file, not a folder",
           errno.EEXIST: "already exists and is not a folder",
           errno.EISDIR: "is a folder where a file is meant",
           errno.EACCES: "permission denied",
           errno.EROFS: "the file system is read-only",
           errno.ENOSPC: "no space left on the device",
           errno.ENOENT: "no such file or folder"}.get(e.errno or -1, e.strerror or str(e))
    return f"{path}: {why}" if path else why


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(__version__, prog_name="oneclass")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Deep one-class novelty detection: fit on normal images, score new ones, evaluate methods."""
    ctx.obj = {"debug": debug}


data_root_option = click.option("--data-root", type=click.Path(file_okay=False), default=None,
                                help="Folder with the datasets in their standard layouts "
                                     "(default: $ONECLASS_DATA, else ~/.cache/oneclass).")


@main.command()
def methods() -> None:
    """List the registered methods."""
    from .registry import detector_class, methods as registered
    for name, text in registered().items():
        click.echo(f"{name:14s} {text}\n{'':14s} presets: {', '.join(detector_class(name).presets)}")


@main.command()
def datasets() -> None:
    """List the datasets `--dataset` accepts."""
    from .data import describe
    for name, text in describe().items():
        click.echo(f"{name:15s} {text}")


@main.command()
@click.argument("name")
@data_root_option
@click.option("--base-url", default=None, help="Mirror to fetch from instead of the official server.")
def download(name: str, data_root: str | None, base_url: str | None) -> None:
    """Download a dataset (checksums verified) into the data root. Needs internet."""
    from .data import default_data_root
    from .data.download import download as fetch
    folder = fetch(name, data_root or default_data_root(), base_url=base_url)
    click.echo(f"{name} ready in {folder}")


@main.command()
@click.option("--method", "method", required=True, help="Method name (see `oneclass methods`).")
@click.option("--dataset", default=None, help="Dataset name (see `oneclass datasets`).")
@data_root_option
@click.option("--normal-class", default=None, help="Class (index or name) that is normal.")
@click.option("--train-dir", type=click.Path(exists=True), default=None,
              help="Your own folder of normal images (flat, or train/<class>/) instead of --dataset.")
@click.option("--preset", default=None, help="Hyper-parameter preset (default: from the dataset; for --train-dir "
                                              "cifar10 if its images are in colour, else mnist).")
@click.option("--epochs", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--option", "options", multiple=True, help="Method option key=value (repeatable).")
@click.option("--quantile", type=click.FloatRange(0.0, 1.0), default=0.95, show_default=True,
              help="Threshold for `predict`: this quantile of the validation scores.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Model file to write.")
@click.option("--resume", is_flag=True, help="Continue an interrupted fit from its last epoch checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def fit(method: str, dataset: str | None, data_root: str | None, normal_class: str | None, train_dir: str | None,
        preset: str | None, epochs: int | None, seed: int, device: str, options: tuple[str, ...], quantile: float,
        out: str, resume: bool, quiet: bool) -> None:
    """Fit a detector on normal images and save it (one file)."""
    from . import protocols
    from .data import folder_in_colour, load as load_dataset, load_folder
    from .detector import threshold_rule
    from .evaluation import default_preset
    from .fileio import check_output_file
    from .registry import create, preset_for
    check_output_file(out, "--out")
    if (dataset is None) == (train_dir is None):
        raise OneClassError("give either --dataset (with --normal-class) or --train-dir")
    from .data import is_video
    if (dataset is not None and is_video(dataset)) or (preset is not None and train_dir is not None
                                                       and "video" in create(method, preset, device="cpu").config):
        return _fit_video(method, dataset, data_root, train_dir, preset, epochs, seed, device, options, quantile,
                          out, resume, quiet)
    if dataset is not None:
        if normal_class is None:
            raise OneClassError("--dataset needs --normal-class")
        preset = preset or default_preset(method, dataset, data_root)
    elif preset is None:
        # a folder's own images say which convention fits: RGB 32×32 or grey 28×28
        colour = folder_in_colour(train_dir)
        preset = preset_for(method, "cifar10" if colour else "mnist")
        click.echo(f"preset {preset}: the images in {train_dir} are {'in colour' if colour else 'grey'} "
                   "(--preset to choose another)")
    # before the data is read: a misspelt method or option is said at once
    det = create(method, preset, epochs=epochs, seed=seed, device=device, **_parse_options(options))
    if dataset is not None:
        # folder datasets are decoded at the model's input; the others keep their own
        train, _ = load_dataset(dataset, data_root, channels=det.channels, size=det.image_size)
        tr, va = protocols.normal_hold_out(train, train.class_index(normal_class), seed)
        x_train, x_val = train.images[tr], train.images[va]
    else:
        data, _ = load_folder(train_dir, det.channels, det.image_size)
        if len(data) < 10:
            raise OneClassError(f"{train_dir}: only {len(data)} image{'' if len(data) == 1 else 's'}; "
                               "need at least 10 to train and validate")
        perm = np.random.default_rng(seed).permutation(len(data))
        n_val = max(1, round(0.1 * len(data)))
        x_train, x_val = data.images[perm[:-n_val]], data.images[perm[-n_val:]]
    t0 = time.perf_counter()
    det.fit(x_train, x_val, **_train_files(det, Path(out), resume, not quiet))
    # fit scored the held-out images already, for its threshold at the default quantile
    det.threshold_from_scores(det.validation_scores[det.headline], {**threshold_rule(quantile, None),
                                                         "of": f"{len(x_val)} held-out training images"})
    det.save(out)
    from .score_store import remove_checkpoint  # the checkpoint and the scores kept beside it
    remove_checkpoint(Path(str(out) + ".ckpt"))
    click.echo(f"fitted {method} ({preset}) on {len(x_train)} images in {time.perf_counter() - t0:.1f}s; "
               f"threshold {det.threshold:.4g} (validation q{quantile:g}); saved {out}")


def _fit_video(method: str, dataset: str | None, data_root: str | None, train_dir: str | None, preset: str | None,
               epochs: int | None, seed: int, device: str, options: tuple[str, ...], quantile: float, out: str,
               resume: bool, quiet: bool) -> None:
    """`fit` on video: the training clips of a video dataset, or a folder of the user's normal footage."""
    from . import video
    from .data import load as load_dataset
    from .data.video import list_footage
    from .registry import create, preset_for
    if dataset is not None:
        preset = preset or preset_for(method, dataset)
    det = create(method, preset, epochs=epochs, seed=seed, device=device, **_parse_options(options))
    # the user's footage is read a chunk at a time as samples are cut: memory holds the samples, not the video
    train = load_dataset(dataset, data_root)[0].clips if dataset is not None else list_footage(train_dir)
    t0 = time.perf_counter()
    info = video.fit_video(det, train, quantile=quantile, **_train_files(det, Path(out), resume, not quiet))
    det.save(out)
    from .score_store import remove_checkpoint  # the checkpoint and the scores kept beside it
    remove_checkpoint(Path(str(out) + ".ckpt"))
    n_frames = sum(len(c) for c in train)
    click.echo(f"fitted {method} ({preset}) on {info['train_samples']} samples of {len(train)} clips "
               f"({n_frames} frames) in {time.perf_counter() - t0:.1f}s; frame threshold {det.threshold:.4g} "
               f"(q{quantile:g} of held-out training frames); saved {out}")


def _train_files(det: Any, out: Path, resume: bool, progress: bool) -> dict[str, Any]:
    from .neural import NeuralDetector
    if not isinstance(det, NeuralDetector):
        return {}
    return {"checkpoint": Path(str(out) + ".ckpt"), "resume": resume,
            "log_path": Path(str(out) + ".log.jsonl"), "progress": progress}


@main.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--input", "input_path", type=click.Path(exists=True), required=True, help="Image file or folder.")
@click.option("--output", type=click.Path(dir_okay=False), default="-", show_default=True, help="CSV file (- = stdout).")
@click.option("--device", default="auto", show_default=True)
@click.option("--plots", type=click.Path(file_okay=False), default=None,
              help="Video models: write a PNG of the score over time per clip into this folder.")
@click.option("--maps", "maps_dir", type=click.Path(file_okay=False), default=None,
              help="Image models: write the image beside its anomaly map (<name>_map.png) per image into this folder.")
def score(model: str, input_path: str, output: str, device: str, plots: str | None, maps_dir: str | None) -> None:
    """Score images (one CSV row per image) or video footage (one row per frame) with a saved model."""
    from .detector import load
    from .video import is_video
    if output != "-":
        from .fileio import check_output_file
        check_output_file(output, "--output")
    det = load(model, device=device)
    if is_video(det):
        if maps_dir is not None:
            raise OneClassError("--maps is for image models; video models write per-clip plots (--plots)")
        return _score_video(det, input_path, output, plots)
    if plots is not None:
        raise OneClassError("--plots is for video models; this model scores images")
    if maps_dir is not None and getattr(det, "map_headline", None) is None:  # refused before any work
        raise OneClassError(f"method {det.name!r} gives no per-pixel anomaly map (--maps): it scores whole images")
    path = Path(input_path)
    files, images = _read_input_images(det, path)
    comps = det.score_components(images)
    text = _scores_csv(files, comps, det.headline, det.threshold)
    if output == "-":
        click.echo(text, nl=False)
    else:
        from .fileio import write_text
        write_text(output, text)
        flagged = (f", {int((comps[det.headline] > det.threshold).sum())} flagged novel"
                   if det.threshold is not None else "")
        click.echo(f"scored {len(files)} images{flagged}; wrote {output}", err=True)
    if maps_dir is not None:
        from .maps import write_overlays
        amaps = det.score_maps(images)[det.map_headline]
        names = [Path(f.name) if path.is_file() else f.relative_to(path) for f in files]
        n = write_overlays(Path(maps_dir), names, np.asarray(images), amaps)
        click.echo(f"{n} anomaly maps ({det.map_headline}) in {maps_dir}", err=True)


@main.command("test")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--input", "input_path", type=click.Path(exists=True, file_okay=False), required=True,
              help="Labelled images: one sub-folder per class (e.g. good/, scratch/, dent/).")
@click.option("--normal", "normal", multiple=True,
              help="A sub-folder of normal images (repeatable; default: good, else normal); the others are novel.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Also write one CSV row per image (path, class, novel, score, components, label).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the measurements as JSON.")
@click.option("--device", default="auto", show_default=True)
def measure(model: str, input_path: str, normal: tuple[str, ...], output: str | None, json_out: str | None,
            device: str) -> None:
    """Measure a saved model on labelled images: AUROC, AUPR, EER and best F1, what its threshold
    does (flagged, false alarms, misses, precision, recall, F1), and the AUROC against each novel class."""
    from .data.folder import load_class_folder, sub_folders
    from .detector import load
    from .evaluation import measure_model
    from .fileio import check_output_file, write_json, write_text
    from .video import is_video
    for out, flag in ((output, "--output"), (json_out, "--json")):
        if out is not None:
            check_output_file(out, flag)
    root = Path(input_path)
    classes = sub_folders(root)
    normal = list(normal) or [n for n in ("good", "normal") if n in classes][:1]
    if not normal:
        raise OneClassError(f"{root}: name the sub-folder(s) of normal images with --normal (found: "
                            f"{', '.join(classes) or 'no sub-folders'})")
    unknown = [n for n in normal if n not in classes]
    if unknown:
        raise OneClassError(f"--normal {', '.join(unknown)}: no such sub-folder of {root} (found: "
                            f"{', '.join(classes) or 'none'})")
    det = load(model, device=device)
    if is_video(det):
        raise OneClassError("`test` measures image models on labelled images; a video model is measured on "
                            "labelled footage by `evaluate --dataset ped2`")
    data = load_class_folder(root, det.channels, (det.image_size, det.image_size), classes)
    files, group_arr = data.paths, data.labels.numpy()
    novel = ~np.isin(group_arr, [classes.index(n) for n in normal])
    m, comps = measure_model(det, data.images, novel.astype(np.int64), group_arr, classes)
    m.update(model=str(model), input=str(root), normal=normal)
    head = m["metrics"][det.headline]
    counts = m["counts"]
    novel_counts = ", ".join(f"{classes[g]} {int((group_arr == g).sum())}" for g in np.unique(group_arr[novel]))
    click.echo(f"{model} ({det.name}, score {det.headline}) on {len(files)} images of {root}: "
               f"{counts['normal']} normal ({', '.join(normal)}), {counts['novel']} novel ({novel_counts})")
    click.echo(f"AUROC {head['auroc']:.4f}  AUPR {head['aupr']:.4f}  EER {head['eer']:.4f} (at {head['eer_threshold']:.6g})"
               f"  best F1 {head['f1_best']:.4f} (at {head['f1_best_threshold']:.6g})")
    at = m.get("at_threshold")
    if at is None:
        click.echo("no threshold in the model: set one with `oneclass threshold` to see what it flags")
    else:
        rule = m.get("threshold_rule") or {}
        click.echo(f"at the model's threshold {at['threshold']:.6g} ({_rule_words(rule)}): {at['flagged']} flagged; "
                   f"precision {at['precision']:.3f}, recall {at['recall']:.3f}, F1 {at['f1']:.3f}; "
                   f"false alarms {at['false_alarms']} of {counts['normal']} normal ({100 * at['false_alarm_rate']:.1f} %), "
                   f"missed {at['missed']} of {counts['novel']} novel ({100 * at['miss_rate']:.1f} %)")
    if m.get("auroc_by_novel_class"):
        click.echo("AUROC against each novel class: "
                   + ", ".join(f"{k} {v:.4f}" for k, v in m["auroc_by_novel_class"].items()))
    others = [c for c in m["metrics"] if c != det.headline]
    if others:
        click.echo("other scores' AUROC: " + ", ".join(f"{c} {m['metrics'][c]['auroc']:.4f}" for c in others))
    if output is not None:
        write_text(output, _scores_csv(files, comps, det.headline, det.threshold,
                                       {"class": [classes[g] for g in group_arr], "novel": novel.astype(int)}))
        click.echo(f"wrote {output}", err=True)
    if json_out is not None:
        write_json(json_out, m)
        click.echo(f"wrote {json_out}", err=True)


def _rule_words(rule: dict[str, Any]) -> str:
    """How a threshold was set, from its rule (`Detector.threshold_rule`)."""
    if "quantile" in rule:
        return f"quantile {rule['quantile']:g} of {rule.get('of', 'reference scores')}"
    if "contamination" in rule:
        return f"contamination {rule['contamination']:g} of {rule.get('of', 'reference scores')}"
    if "value" in rule:
        return "set by value"
    return "rule not recorded"


def _read_input_images(det: Any, path: Path) -> tuple[list[Path], Any]:
    """An image file, or every image under a folder (sorted), in the model's convention."""
    from .data.folder import read_images, tree_images
    files = [path] if path.is_file() else tree_images(path)
    if not files:
        raise OneClassError(f"no image files in {path}")
    return files, read_images(files, det.channels, (det.image_size, det.image_size))


@main.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--input", "input_path", type=click.Path(exists=True), default=None,
              help="Reference images or footage: normal samples (--quantile), or samples with a known share of "
                   "anomalies (--contamination).")
@click.option("--quantile", type=click.FloatRange(0, 1), default=None,
              help="Flag what scores above this quantile of the reference scores, e.g. 0.99.")
@click.option("--contamination", type=click.FloatRange(0, 1), default=None,
              help="Flag this top fraction of the reference scores.")
@click.option("--value", type=float, default=None, help="The threshold itself, in score units (no --input).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Model file to write (default: --model, replaced atomically).")
@click.option("--device", default="auto", show_default=True)
def threshold(model: str, input_path: str | None, quantile: float | None, contamination: float | None,
              value: float | None, out: str | None, device: str) -> None:
    """Set a saved model's threshold for `predict` and the labels of `score`, without refitting."""
    from .detector import load, threshold_rule
    from .fileio import check_output_file
    from .video import is_video
    out = out or model
    check_output_file(out, "--out")
    if sum(v is not None for v in (quantile, contamination, value)) != 1:
        raise OneClassError("give one of --quantile, --contamination or --value")
    if value is not None:
        if input_path is not None:
            raise OneClassError("--value is the threshold itself: give no --input")
        det = load(model, device=device)
        det.set_threshold(value=value)
        what = "set by value"
    else:
        rule = threshold_rule(quantile, contamination)
        if input_path is None:
            raise OneClassError("--quantile and --contamination need --input: the reference images or footage")
        det = load(model, device=device)
        if is_video(det):
            from .video import footage_scores
            scores, unit = footage_scores(det, input_path), "frames"
        else:
            scores, unit = det.score_samples(_read_input_images(det, Path(input_path))[1]), "images"
        of = f"{len(scores)} {unit} of {input_path}"
        det.threshold_from_scores(scores, {**rule, "of": of})
        name, v = next(iter(rule.items()))
        what = f"{name} {v:g} of {of}; {int((scores > det.threshold).sum())} of them above it"
    det.save(out)
    click.echo(f"threshold {det.threshold:.6g} ({what}); saved {out}")


@main.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def info(model: str, as_json: bool) -> None:
    """What a saved model is: method, input, components, options, threshold, training, versions."""
    from .detector import describe_model
    d = describe_model(model)
    if as_json:
        click.echo(json.dumps(d, indent=1, default=str))
        return
    size = d["input"]["size"]
    side = "×".join(map(str, size)) if isinstance(size, list) else f"{size}×{size}"
    grey = {1: "grey", 3: "RGB"}.get(d["input"]["channels"], f"{d['input']['channels']}-channel")
    train = d["training"]
    lines = [f"{d['file']}: {d['method']} (preset {d['preset']}, seed {d['seed']}), {d['bytes'] / 1e6:.1f} MB"
             + (f" — {d['description']}" if d["description"] else " — method not registered here"),
             f"input: {grey} video footage, cut into {side} patches" if d["video"] else
             f"input: {grey} {side} images (others are converted)"]
    if d["components"]:
        lines.append(f"scores: {d['headline']} (headline)"
                     + "".join(f", {c}" for c in d["components"] if c != d["headline"]))
    if d["options"]:
        lines.append("options beside the preset's: " + ", ".join(f"{k}={v}" for k, v in d["options"].items()))
    rule = d["threshold_rule"] or {}
    lines.append("threshold: none set" if d["threshold"] is None else
                 f"threshold: {d['threshold']:.6g} ("
                 + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in rule.items()) + ")")
    if train.get("epochs_run") is not None:
        lines.append(f"trained: {train['epochs_run']} of {train.get('epochs')} epochs"
                     + (f" ({train['steps']:,} optimisation step{'' if train['steps'] == 1 else 's'})"
                        if train.get("steps") is not None else "")
                     + f", kept epoch {train.get('best_epoch')}"
                     + (" (stopped early)" if train.get("stopped_early") else ""))
    if train.get("undertrained"):
        lines.append(f"warning: {train['undertrained']}")
    if train.get("train_seconds") is not None:
        lines.append(f"fit: {train.get('n_train')} training + {train.get('n_val')} validation samples, "
                     f"{train['train_seconds']:.1f} s on {train.get('device')}")
    if d["parameters"] is not None:
        lines.append(f"parameters: {d['parameters']:,}")
    lines.append("saved by: " + ", ".join(f"{k} {v}" for k, v in (d["versions"] or {}).items()))
    click.echo("\n".join(lines))


def _scores_csv(files: list[Any], comps: dict[str, np.ndarray], headline: str, threshold: float | None,
                extra: dict[str, Any] | None = None) -> str:
    """One CSV row per image: path, any `extra` columns, the headline score, the other components,
    and the label `predict` gives (score above the threshold) when the model has a threshold."""
    extra = extra or {}
    head, parts = comps[headline], _component_columns(comps)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", *extra, "score", *parts, *(["label"] if threshold is not None else [])])
    for i, f in enumerate(files):
        writer.writerow([str(f), *(column[i] for column in extra.values()), f"{head[i]:.6g}",
                         *(f"{comps[c][i]:.6g}" for c in parts),
                         *([int(head[i] > threshold)] if threshold is not None else [])])
    return buf.getvalue()


def _component_columns(comps: Any) -> list[str]:
    """The component columns beside `score`: a method whose one component is itself named
    `score` (OC-SVM, KDE) would otherwise give the CSV two columns of that name."""
    return [c for c in comps if c != "score"]


def _score_video(det: Any, input_path: str, output: str, plots: str | None) -> None:
    """One CSV row per frame (its time in seconds where the video file states a frame rate), read
    and scored a chunk of frames at a time; a plot per clip with the model's threshold."""
    from . import video
    from .data.video import list_footage
    from .fileio import atomic_open, write_text
    sources = list_footage(input_path)
    timed = any(s.fps for s in sources)
    label = det.threshold is not None
    buf = io.StringIO()
    writer = csv.writer(buf)
    flagged = n = 0
    for i, source in enumerate(sources):
        scores = video.score_stream(det, source.chunks(), source.name, source.source, total=source.estimated_len(),
                                    progress=True)
        comps = _component_columns(scores)
        if i == 0:
            writer.writerow(["clip", "frame", *(["time_s"] if timed else []), "score", *comps,
                             *(["label"] if label else [])])
        head = scores[det.headline]
        for t in range(len(head)):
            flag = int(head[t] > det.threshold) if label else None
            flagged += flag or 0
            when = [f"{t / source.fps:.3f}" if source.fps else ""] if timed else []
            writer.writerow([source.name, t, *when, f"{head[t]:.6g}", *(f"{scores[c][t]:.6g}" for c in comps),
                             *([flag] if label else [])])
        n += len(head)
        if plots is not None:
            with atomic_open(Path(plots) / f"{source.name}.png") as fh:
                fh.write(video.clip_plot_png(source.name, head, None, f"{det.name} {det.headline}", det.threshold))
    if output == "-":
        click.echo(buf.getvalue(), nl=False)
    else:
        write_text(output, buf.getvalue())
    click.echo(f"scored {n} frames of {len(sources)} clip(s)" + (f", {flagged} flagged novel" if label else "")
               + ("" if output == "-" else f"; wrote {output}") + (f"; plots in {plots}" if plots else ""), err=True)


@main.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="File to write (e.g. m.onnx).")
def export(model: str, fmt: str, out: str) -> None:
    """Export a saved model's whole scoring path (uint8 images → scores) for deployment without Python."""
    from .detector import load
    from .export import export_onnx, exportable
    from .fileio import check_output_file
    check_output_file(out, "--out")
    det = load(model, device="cpu")
    why = exportable(det)
    if why is not None:
        raise OneClassError(why)
    info = export_onnx(det, out)
    shape = "×".join(map(str, info["inputs"]["images"][:4]))
    click.echo(f"exported {det.name} to {out} ({info['bytes'] / 1e6:.1f} MB, ONNX opset {info['opset']}): input "
               f"'images' uint8 {shape}; outputs {', '.join(info['outputs'])} ('score' = {info['headline']}); "
               + (f"threshold {info['threshold']:.6g} in its metadata (oneclass.threshold)" if info["threshold"] is not None
                  else "no threshold set"))


@main.command()
@click.option("--method", "method", required=True,
              help="Method name, or several comma-separated (dae,lsa,ocsvm): each evaluated, then side by side.")
@click.option("--dataset", required=True)
@data_root_option
@click.option("--protocol", type=click.Choice(["standard", "memae", "outlier-fraction", "coil", "mvtec", "video"]),
              default=None, help="Evaluation protocol [default: video for a video dataset, mvtec for mvtec, "
                                 "else standard].")
@click.option("--classes", default="all", show_default=True, help="Comma-separated classes, or all.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--epochs", type=int, default=None, help="Training epochs (default: the preset's).")
@click.option("--outlier-fractions", default="0.1,0.2,0.3,0.4,0.5", show_default=True,
              help="For the outlier-fraction protocol.")
@click.option("--preset", default=None)
@click.option("--option", "options", multiple=True, help="Method option key=value (repeatable).")
@click.option("--choose", "choose", multiple=True, metavar="KEY=V1,V2",
              help="Candidate values of an option, chosen per class on the labelled selection set from the "
                   "training split (paper-style; repeatable: every combination is trained).")
@click.option("--watch-test", is_flag=True,
              help="Log each component's test AUROC after every epoch (diagnosis only: it chooses nothing; "
                   "runs finished without it are run again).")
@click.option("--watch-every", type=int, default=None, metavar="N",
              help="With --watch-test: watch after every Nth epoch and the last only (each watch scores the "
                   "whole test split).")
@click.option("--device", default="auto", show_default=True)
@click.option("--results", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(method: str, dataset: str, data_root: str | None, protocol: str | None, classes: str, seeds: str,
             epochs: int | None, outlier_fractions: str, preset: str | None, options: tuple[str, ...],
             choose: tuple[str, ...], watch_test: bool, watch_every: int | None, device: str, results: str,
             quiet: bool) -> None:
    """Run (or reuse) every (class, seed) run of a method on a protocol; print the table. Several
    methods (--method dae,lsa,ocsvm) are evaluated one after the other, then set side by side.

    With --choose, every combination of the candidate values is a run whose epoch is picked on a
    labelled selection set drawn from the training split (150 normal, 150 other-class images); per
    class and seed the combination with the best selection AUROC is kept (ties: the first given)."""
    from .data import is_video
    from .evaluation import EvalSpec, default_preset, evaluate as run, parse_classes, parse_numbers
    from .registry import create
    from .report import comparison
    protocol = protocol or ("video" if is_video(dataset) else "mvtec" if dataset == "mvtec" else "standard")
    if watch_every is not None and not watch_test:
        raise OneClassError("--watch-every sets how often --watch-test scores the test split: give --watch-test too")
    methods = [m.strip() for m in method.split(",") if m.strip()]
    if not methods:
        raise OneClassError("--method: no method given")
    everything = []
    for name in methods:
        trains_in_epochs = "epochs" in create(name, preset or default_preset(name, dataset, data_root),
                                              device="cpu").config
        if epochs is not None and not trains_in_epochs and len(methods) > 1:
            click.echo(f"{name} does not train in epochs: --epochs {epochs} applies to the others", err=True)
        spec = EvalSpec(method=name, dataset=dataset, protocol=protocol, classes=parse_classes(classes),
                        seeds=parse_numbers(seeds, int, "--seeds"),
                        epochs=epochs if trains_in_epochs or len(methods) == 1 else None,
                        outlier_fractions=parse_numbers(outlier_fractions, float, "--outlier-fractions"),
                        device=device, options=_parse_options(options), preset=preset,
                        choose=_parse_choices(choose), watch_test=watch_test,
                        watch_every=1 if watch_every is None else watch_every)
        runs = run(spec, data_root, results, progress=not quiet, echo=lambda s: click.echo(s, err=True))
        _print_evaluation(runs, name, dataset, protocol)
        everything += runs
    if len(methods) > 1 and protocol not in ("video", "outlier-fraction"):
        click.echo("\n" + comparison(everything))


def _print_evaluation(runs: list[dict[str, Any]], method: str, dataset: str, protocol: str) -> None:
    """The tables of one method's runs, as `evaluate` prints them."""
    from .evaluation import iter_groups
    from .report import _markdown, _settings, fraction_table, group_table, video_budget, video_table
    if protocol == "outlier-fraction":
        click.echo(fraction_table(runs))
        return
    for group in iter_groups(runs).values():
        if protocol == "video":
            header, rows, notes = video_table(group)
            click.echo(f"\n{method} on {dataset} (video, {group[0]['protocol_info']['normalisation']} "
                       f"normalisation; {video_budget(group[0])}); {_settings(group)}\n")
            click.echo(_markdown(header, rows))
            if notes:
                click.echo("notes: " + "; ".join(notes))
            continue
        header, rows, notes = group_table(group)
        click.echo(f"\n{method} on {dataset} ({protocol}); {_settings(group)}\n")
        click.echo(_markdown(header, rows))
        if notes:
            click.echo("paper: " + "; ".join(notes))
        if dataset == "folder":  # a user's own data: which kinds of novelty are told apart
            for r in sorted(group, key=lambda r: (r["normal_class"], r["seed"])):
                by_class = r.get("headline_auroc_by_novel_class")
                if by_class:
                    click.echo(f"normal {r['normal_class_name']!r}, seed {r['seed']}: {r['headline']} AUROC against "
                               + ", ".join(f"{k} {v:.3f}" for k, v in by_class.items()))


@main.command()
@click.argument("suite")
@click.option("--table", "tables", multiple=True, help="Only this table of the suite, e.g. 'Table 1' (repeatable).")
@click.option("--method", "only_methods", default=None, help="Only the cells of these methods (comma-separated).")
@click.option("--selection", type=click.Choice(["label-free", "paper-style"]), default=None,
              help="Only the cells whose epoch is chosen this way (default: both).")
@click.option("--dataset", "only_datasets", default=None, help="Only the cells on these datasets (comma-separated).")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option("--classes", default=None, help="Comma-separated classes instead of each cell's own (default: all).")
@click.option("--epochs", type=int, default=None, help="Train every cell this many epochs instead of its budget.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="An option for every cell whose method has it, e.g. precision=bf16 (repeatable): runs of "
                   "their own, kept in RESULTS/reproduce-SUITE-KEY=VALUE.md; the other cells are left out.")
@data_root_option
@click.option("--results", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--executor", type=click.Choice(["auto", "ray", "local"]), default="auto", show_default=True,
              help="ray: each run a Ray task; local: here, one after the other or --jobs at a time; "
                   "auto: Ray if installed.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Runs at once (local: each in its own process with --cpus-per-run threads, e.g. several "
                   "runs sharing one GPU; Ray: at most this many). Default: local 1, Ray as many as fit.")
@click.option("--time-budget", type=click.FloatRange(min=0.0), default=None, metavar="MINUTES",
              help="Start only the runs that should end within this many minutes, at the median pace of "
                   "their cell's finished runs on this device; the rest wait for the next call.")
@click.option("--address", default=None, help="Join this Ray cluster (host:port or auto) instead of a local instance.")
@click.option("--cpus-per-run", type=click.FloatRange(min=0.01), default=1.0, show_default=True)
@click.option("--gpus-per-run", type=click.FloatRange(min=0.0), default=None,
              help="Share of a GPU per run, e.g. 0.1 (default: 1/8 where the cluster has GPUs, else 0).")
@click.option("--dry-run", is_flag=True, help="List the runs to do and stop.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def reproduce(suite: str, tables: tuple[str, ...], only_methods: str | None, selection: str | None,
              only_datasets: str | None, seeds: str, classes: str | None, epochs: int | None,
              options: tuple[str, ...], data_root: str | None, results: str, device: str, executor: str, jobs: int | None,
              time_budget: float | None, address: str | None, cpus_per_run: float, gpus_per_run: float | None,
              dry_run: bool, quiet: bool) -> None:
    """Re-measure a paper's tables: SUITE is lsa, alocc, oled, attn-entropy, baselines or all.

    Runs every missing run (finished ones are skipped, so a cut-off suite resumes), then prints
    ours (mean ± std over seeds) beside the paper's values. RESULTS/reproduce-SUITE.md
    (-eEPOCHS.md with --epochs) keeps the whole suite: the cells run now over every class and
    every seed stored, the others as an earlier run wrote them."""
    from . import evaluation, reproduce as rep
    seed_list = evaluation.parse_numbers(seeds, int, "--seeds")
    class_list = evaluation.parse_classes(classes) if classes else None
    chosen = rep.cells(suite, list(tables), only_methods.split(",") if only_methods else None, selection,
                       only_datasets.split(",") if only_datasets else None)
    extra = _parse_options(options)
    if dry_run:
        from .data import load as load_dataset
        from .detector import resolve_device
        if extra:
            chosen, left = rep.with_options(chosen, extra)
            for cell in left:
                click.echo(f"{cell.title}: left out (no option {', '.join(sorted(extra))})")
        train_splits: dict[str, Any] = {}  # each dataset read once, not once per cell
        for cell in chosen:
            if cell.dataset not in train_splits:
                train_splits[cell.dataset] = load_dataset(cell.dataset, data_root)[0]
            spec = rep.spec_of(cell, seed_list, class_list, epochs, device)
            tasks = rep.plan_cell(spec, data_root, results, train=train_splits[cell.dataset])
            todo = [t for t in tasks if not t.finished]
            took = rep.cell_pace(cell, seed_list, epochs, device, data_root, results, train=train_splits[cell.dataset])
            # a run cut off earlier (another session's) resumes from what it kept
            kept = [evaluation.kept_progress(t, results) for t in todo]
            click.echo(f"{cell.title}: {len(todo)} run(s) to do" + _estimate(took, kept, device))
            here = took.get(resolve_device(device).type)
            for t, k in zip(todo, kept):
                left = f"; about {rep.duration(here.left(k))} left" if here is not None else ""
                click.echo(f"  {t.name}" + (f" (under way: {k}{left})" if k else ""))
        return
    out = rep.reproduce(suite, data_root, results, tables=list(tables), seeds=seed_list, classes=class_list,
                        epochs=epochs, device=device, executor=executor, address=address,
                        cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run, jobs=jobs,
                        time_budget=None if time_budget is None else time_budget * 60, progress=not quiet,
                        echo=lambda s: click.echo(s, err=True), suite_cells=chosen, options=extra or None)
    click.echo(out.report)
    s = out.summary
    click.echo(f"{len(s.done)} run(s) done, {len(s.failed)} failed, {out.skipped} finished before; "
               f"{s.seconds:.1f}s ({s.executor})", err=True)
    if s.deferred:
        click.echo(f"{len(s.deferred)} run(s) not started: they would not have ended within the time budget; "
                   f"the next call starts them", err=True)
    if s.failed:
        for f in s.failed:
            click.echo(f"failed: {f.task.label}: {f.error}", err=True)
        raise OneClassError(f"{len(s.failed)} run(s) failed (the others are stored; run again to retry them)")


def _estimate(pace: dict[str, Any], kept: list[Any], device: str) -> str:
    """What the finished runs of a cell say about the rest: their median time per device, and the
    runs to do (`kept`: what each resumes from, None for a run not started) at that pace on the
    device this command would use, one after the other."""
    if not pace:
        return ""
    from . import reproduce as rep
    from .detector import resolve_device
    took = ", ".join(f"{rep.duration(p.seconds)} on {d} ({p.runs} run{'s' if p.runs > 1 else ''})"
                     for d, p in pace.items())
    text = f"; a finished run took a median of {took}"
    here = resolve_device(device).type
    if kept and here in pace:
        text += f"; the rest about {rep.duration(sum(pace[here].left(k) for k in kept))} on {here}, one after the other"
    return text


@main.command()
@click.option("--results", type=click.Path(file_okay=False, exists=True), default="results", show_default=True)
@click.option("--embed", "embed", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Also rewrite the summary block of this Markdown file (e.g. README.md; repeatable).")
@click.option("--html", "html_out", is_flag=False, flag_value="", default=None, type=click.Path(dir_okay=False),
              help="Also write one self-contained HTML page (default RESULTS/report.html): tables, ROC curves, "
                   "histograms, example images with maps, training curves.")
def report(results: str, embed: tuple[str, ...], html_out: str | None) -> None:
    """Tables of every finished run (also written to RESULTS/report.md and report.csv)."""
    from .evaluation import collect, collect_anchors
    from .report import embed_summary, report as make_report, summary
    if html_out:
        from .fileio import check_output_file
        check_output_file(html_out, "--html")
    click.echo(make_report(results))
    if html_out is not None:
        from .report_html import html_report
        click.echo(f"wrote {html_report(results, html_out or None)}", err=True)
    for path in embed:
        embed_summary(path, summary(collect(results), collect_anchors(results)))
        click.echo(f"summary written into {path}", err=True)


@main.command()
@click.option("--method", "method", default="dae", show_default=True)
@click.option("--digit", type=int, default=0, show_default=True, help="The normal digit.")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="demo-output", show_default=True)
def demo(method: str, digit: int, epochs: int, device: str, out: str) -> None:
    """Quickstart on the embedded MNIST subset: fit on one digit, score the others, plot."""
    from .demo import run_demo
    run_demo(method=method, digit=digit, epochs=epochs, device=device, out=Path(out), echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
