"""Video novelty detection: how a detector's video preset turns clips into training samples,
how its sample scores become one score per frame, and the frame-level protocol of the papers
(../shared/specs/protocols.md, "UCSD Ped2 video").

Two samplers, chosen by the preset's `video` option:
- `clip-patches` (LSA, §4.2 and its code): frames resized to `resize` (Ped2 256×384), sliding
  windows of `window` frames (16), each cut into `frames`×`size`×`size` patches (8×32×32) on a
  grid of stride `patch_stride` (16); a window's score is the mean of its patches', a frame's
  the mean of the windows that contain it.
- `frame-patches` (ALOCC, OLED): each frame cut into `patch`×`patch` patches (30×30) with stride
  `patch_stride` (30: non-overlapping; the last row/column is aligned to the frame's edge), padded
  to the network's input size; a frame's score is the maximum over its patches ("a frame is
  flagged if any of its patches is").

Scores are put on a common scale in one of two ways, named in every result:
- `validation`: the detector's own min-max normalisers, fitted on held-out *training* samples
  (label-free, inductive: each frame's score depends on that frame's clip only through the model);
- `per-clip`: each test clip's frame scores min-max scaled within that clip before they are
  combined (LSA's video protocol; label-free but transductive: it sees the whole test clip).
AUROC is `pooled` over all test frames (micro, as the papers report); `auroc_macro` is the mean
over the test clips that have both normal and abnormal frames. `smooth` > 0 applies a centred
moving average of that many frames to each clip's scores (0: none, the default)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import metrics
from .data.video import Clip, FootageSource, VideoData, list_footage
from .errors import DataError, OneClassError
from .metrics import MinMax

NORMALISATIONS = ("validation", "per-clip")


# ---- samplers ----------------------------------------------------------------------------------
def _check_size(frames: torch.Tensor, frame_shape: tuple[int, int], name: str, source: str) -> torch.Tensor:
    """`frames` (a chunk of a clip, as sampled) if they have the clip's size: a stream may change it."""
    if tuple(frames.shape[1:]) != tuple(frame_shape):
        raise DataError(f"clip {name} ({source or 'no file'}): frames change size from "
                        f"{frame_shape[1]}×{frame_shape[0]} to {frames.shape[2]}×{frames.shape[1]}")
    return frames



def is_video(det: Any) -> bool:
    return bool(det.config.get("video"))


def _grid(extent: int, patch: int, stride: int) -> list[int]:
    """Patch origins along one axis: every `stride`, plus one flush with the far edge."""
    if extent < patch:
        return []
    starts = list(range(0, extent - patch + 1, stride))
    if starts[-1] != extent - patch:
        starts.append(extent - patch)
    return starts


@dataclass
class ClipLayout:
    """Where a clip's samples come from: for each sample, its window (or frame) and its place."""
    units: list[tuple[int, int]]        # per unit (window or frame): (first frame, frames covered)
    n_frames: int
    grid: tuple[list[int], list[int]]   # patch origins (rows, cols) in the sampled frame's pixels
    patch: int
    frame_shape: tuple[int, int]        # the sampled frame's size (after any resize)


class Sampler:
    """Cuts clips into the samples a detector's network takes (see the module docstring)."""

    def __init__(self, det: Any) -> None:
        c = det.config
        self.kind = c["video"]
        if self.kind not in ("clip-patches", "frame-patches"):
            raise OneClassError(f"unknown video sampler {self.kind!r}")
        self.patch_stride = int(c["patch_stride"])
        self.train_stride = int(c.get("train_stride", 1))
        self.test_stride = int(c.get("test_stride", 1))
        if min(self.patch_stride, self.train_stride, self.test_stride) < 1:
            raise OneClassError("patch_stride, train_stride and test_stride must be at least 1")
        if self.kind == "clip-patches":
            self.window = int(c["window"])
            self.depth = int(c["frames"])
            self.patch = int(c["size"])
            self.resize = tuple(int(v) for v in c["resize"]) if c.get("resize") else None
            if self.window % self.depth:
                raise OneClassError(f"window {self.window} must be a multiple of the patch depth {self.depth}")
        else:
            self.window = 1
            self.depth = 1
            self.patch = int(c["patch"])
            self.resize = None
            self.input_size = int(c["size"])
            if self.input_size < self.patch:
                raise OneClassError(f"patch {self.patch} is larger than the network's input {self.input_size}")
            if self.test_stride != 1:  # each frame is its own unit: a stride would leave frames unscored
                raise OneClassError(f"test_stride {self.test_stride}: a {c['video']} model scores every frame "
                                    "(test_stride applies to windowed models such as LSA's)")

    # -- geometry
    def prepare_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 n×H×W frames resized as the method's protocol asks (frame by frame, so a clip read
        in chunks gives the same pixels as the whole clip)."""
        out = torch.from_numpy(np.ascontiguousarray(frames))
        if self.resize is not None and tuple(out.shape[1:]) != self.resize:
            out = F.interpolate(out[:, None].float(), size=self.resize, mode="bilinear", align_corners=False,
                                antialias=True)[:, 0].round_().clamp_(0, 255).to(torch.uint8)
        return out

    def grid(self, frame_shape: tuple[int, int], name: str) -> tuple[list[int], list[int]]:
        """Patch origins (rows, cols) on a sampled frame of `frame_shape`."""
        h, w = self.resize if self.resize is not None else frame_shape
        grid = (_grid(h, self.patch, self.patch_stride), _grid(w, self.patch, self.patch_stride))
        if not grid[0] or not grid[1]:
            raise DataError(f"clip {name}: frames of {w}×{h} are smaller than the model's "
                            f"{self.patch}×{self.patch} patches")
        return grid

    def check_length(self, n_frames: int, name: str, source: str) -> None:
        if n_frames < self.window:
            raise DataError(f"clip {name} ({source or 'no file'}) has {n_frames} frames, fewer than the "
                            f"model's temporal window of {self.window}")

    def layout(self, clip: Clip | FootageSource, stride: int) -> ClipLayout:
        t = len(clip)
        self.check_length(t, clip.name, clip.source)
        grid = self.grid(clip.frame_shape, clip.name)
        frame_shape = self.resize if self.resize is not None else clip.frame_shape
        return ClipLayout([(s, self.window) for s in _grid(t, self.window, stride)], t, grid, self.patch,
                          tuple(frame_shape))

    def samples_per_unit(self, lay: ClipLayout) -> int:
        return (self.window // self.depth) * len(lay.grid[0]) * len(lay.grid[1])

    def cut(self, frames: torch.Tensor, lay: ClipLayout, units: list[int]) -> torch.Tensor:
        """The samples of some units, in the order (unit, time chunk, row, col): uint8 in the
        layout the detector's `prepare` takes."""
        p = lay.patch
        rows, cols = lay.grid
        out = []
        for u in units:
            start, length = lay.units[u]
            block = frames[start:start + length]                       # window × H × W
            for k in range(0, length, self.depth):
                chunk = block[k:k + self.depth]
                tiles = torch.stack([chunk[:, r:r + p, c:c + p] for r in rows for c in cols])  # G × depth × p × p
                out.append(tiles)
        x = torch.cat(out).unsqueeze(1)                                # N × 1 × depth × p × p
        if self.kind == "frame-patches":
            x = x[:, :, 0]                                             # N × 1 × p × p
            pad = self.input_size - p
            if pad:  # edge-replicate to the network's size: no artificial border
                x = F.pad(x.float(), (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2),
                          mode="replicate").to(torch.uint8)
        return x.contiguous()

    def cut_streamed(self, clip: Clip | FootageSource, lay: ClipLayout, units: list[int],
                     keep: list[np.ndarray] | None = None) -> list[torch.Tensor]:
        """Per unit (ascending), `cut` of it from a clip read a chunk at a time, holding no more than
        a chunk and a window of its frames; `keep[i]`, where given, picks the samples of unit i kept."""
        if units != sorted(units):
            raise OneClassError("cut_streamed takes its units in ascending order")
        parts: list[torch.Tensor] = []
        buffer, buffer_start, i = None, 0, 0
        for chunk in clip.chunks():
            frames = _check_size(self.prepare_frames(chunk), lay.frame_shape, clip.name, clip.source)
            buffer = frames if buffer is None else torch.cat([buffer, frames])
            ready = i
            while ready < len(units) and sum(lay.units[units[ready]]) <= buffer_start + len(buffer):
                ready += 1
            if ready > i:  # the units whose frames are all here, cut in one go
                here = ClipLayout([(s - buffer_start, n) for s, n in (lay.units[u] for u in units[i:ready])],
                                  len(buffer), lay.grid, lay.patch, lay.frame_shape)
                block = self.cut(buffer, here, list(range(ready - i))).unflatten(0, (ready - i, -1))
                parts += [x.clone() if keep is None else x[torch.as_tensor(keep[j])]
                          for j, x in zip(range(i, ready), block)]
                i = ready
            if i == len(units):
                break
            first = min(lay.units[units[i]][0], buffer_start + len(buffer))  # the next unit may start in a later chunk
            if first > buffer_start:
                buffer, buffer_start = buffer[first - buffer_start:], first
        if i < len(units):
            read = buffer_start + (0 if buffer is None else len(buffer))
            raise DataError(f"clip {clip.name} ({clip.source or 'no file'}) ended at frame {read} before the window "
                            f"at frame {lay.units[units[i]][0]}: did the file change while it was read?")
        return parts

    def training_samples(self, video: VideoData | list[Clip] | list[FootageSource], seed: int,
                         val_fraction: float = 0.1, max_samples: int | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(train, val) samples from normal clips. Whole windows (frames) are held out for
        validation, so no validation sample shares frames with a training one; `max_samples`
        keeps a seeded subset of the training units' samples (a stated, reduced budget). Clips
        are read a chunk at a time: memory holds the samples kept, not the footage."""
        rng = np.random.default_rng([seed, 1601])
        clips = video.clips if isinstance(video, VideoData) else list(video)
        units = []  # (clip index, unit index)
        layouts = []
        for ci, clip in enumerate(clips):
            lay = self.layout(clip, self.train_stride)
            layouts.append(lay)
            units += [(ci, u) for u in range(len(lay.units))]
        order = rng.permutation(len(units))
        n_val = max(1, int(round(val_fraction * len(units))))
        if len(units) - n_val < 1:
            raise DataError(f"only {len(units)} training window(s): too few to hold out validation data")
        per_unit = self.samples_per_unit(layouts[0])
        val_units = sorted(units[i] for i in order[:n_val])
        train_units = sorted(units[i] for i in order[n_val:])

        def picked(chosen: list[tuple[int, int]], limit: int | None) -> dict[int, dict[int, np.ndarray]]:
            """Per clip and unit, which of the unit's samples are kept: all of them, or with a
            limit a seeded subset drawn from all (patches from many frames, not every patch of a few)."""
            picks = np.arange(len(chosen) * per_unit)
            if limit is not None and len(picks) > limit:
                picks = np.sort(rng.choice(len(picks), limit, replace=False))
            ks, firsts = np.unique(picks // per_unit, return_index=True)  # picks are sorted: unit, then sample
            out: dict[int, dict[int, np.ndarray]] = {}
            for k, offsets in zip(ks.tolist(), np.split(picks % per_unit, firsts[1:])):
                ci, u = chosen[k]
                out.setdefault(ci, {})[u] = offsets
            return out

        train_picks = picked(train_units, max_samples)
        val_picks = picked(val_units, None if max_samples is None else max(1, max_samples // 9))
        train_parts, val_parts = [], []
        for ci in sorted(set(train_picks) | set(val_picks)):  # each clip read once for both splits
            both = {**train_picks.get(ci, {}), **val_picks.get(ci, {})}
            needed = sorted(both)
            cut = dict(zip(needed, self.cut_streamed(clips[ci], layouts[ci], needed, [both[u] for u in needed])))
            train_parts += [cut[u] for u in sorted(train_picks.get(ci, {}))]
            val_parts += [cut[u] for u in sorted(val_picks.get(ci, {}))]
        train, val = torch.cat(train_parts), torch.cat(val_parts)
        self.val_units = [(clips[c].name, u) for c, u in val_units]  # for the frame threshold
        info = {"sampler": self.kind, "train_units": len(train_units), "val_units": len(val_units),
                "units_available": len(units), "train_samples": len(train), "val_samples": len(val),
                "samples_per_unit": per_unit, "max_train_samples": max_samples}
        return train, val, info


# ---- scoring ---------------------------------------------------------------------------------
@dataclass
class ClipScores:
    """One clip's scores: per frame, each component raw (aggregated, not normalised) and final
    (validation-normalised and combined, then aggregated); per frame a coarse anomaly map of the
    headline score (cells of the patch grid, upsampled to the frame when asked)."""
    name: str
    raw: dict[str, np.ndarray]
    final: dict[str, np.ndarray]
    cell_maps: np.ndarray                # T × rows × cols, headline score per patch cell
    grid: tuple[list[int], list[int]]
    patch: int
    frame_shape: tuple[int, int]
    samples: int
    seconds: float


UNITS_PER_BATCH = 8  # windows (or frames) scored together: bounded memory, the same batches however a clip is read


@dataclass
class _UnitScores:
    """What scoring a clip's units gives: per unit (window or frame) each component's raw and final
    score aggregated over its samples, and with `keep_samples` the headline's per-sample scores."""
    layout: ClipLayout
    raw: dict[str, np.ndarray]
    final: dict[str, np.ndarray]
    samples: np.ndarray | None
    count: int


def _score_units(det: Any, sampler: Sampler, chunks: Iterable[np.ndarray], name: str, source: str,
                 keep_samples: bool) -> _UnitScores:
    """Score a clip read as consecutive chunks of frames, holding no more than a chunk, a window
    and a batch of frames: units are scored in order, `UNITS_PER_BATCH` at a time, the last one
    flush with the clip's end, so any chunking gives the batches (and scores) of the whole clip."""
    window, stride = sampler.window, sampler.test_stride
    buffer = torch.zeros((0, 0, 0), dtype=torch.uint8)
    buffer_start = 0           # clip index of buffer[0]
    next_start = 0             # the next grid unit not yet queued
    queued: list[int] = []     # unit starts waiting for a full batch
    starts: list[int] = []
    raw: dict[str, list[np.ndarray]] = {}
    final: dict[str, list[np.ndarray]] = {}
    samples: list[np.ndarray] = []
    grid: tuple[list[int], list[int]] | None = None
    frame_shape = (0, 0)
    count = 0
    pool = np.max if sampler.kind == "frame-patches" else np.mean  # a frame's patches: any flags it; a window: mean

    def run(batch: list[int]) -> None:
        nonlocal count
        assert grid is not None
        lay = ClipLayout([(s - buffer_start, window) for s in batch], len(buffer), grid, sampler.patch, frame_shape)
        x = sampler.cut(buffer, lay, list(range(len(batch))))
        r = det._raw(det.prepare(x))
        f = det.finalise(r)
        count += len(x)
        for k, v in r.items():
            raw.setdefault(k, []).append(pool(np.asarray(v).reshape(len(batch), -1), axis=1))
        for k in det.components:
            final.setdefault(k, []).append(pool(np.asarray(f[k], dtype=np.float64).reshape(len(batch), -1), axis=1))
        if keep_samples:
            samples.append(np.asarray(f[det.headline], dtype=np.float64))
        starts.extend(batch)

    def drain(all_: bool) -> None:
        while len(queued) >= UNITS_PER_BATCH or (all_ and queued):
            run(queued[:UNITS_PER_BATCH])
            del queued[:UNITS_PER_BATCH]

    for chunk in chunks:
        frames = sampler.prepare_frames(chunk)
        if grid is None:
            grid = sampler.grid(chunk.shape[1:], name)
            frame_shape = tuple(frames.shape[1:])
        else:
            _check_size(frames, frame_shape, name, source)
        buffer = torch.cat([buffer, frames]) if len(buffer) else frames
        end = buffer_start + len(buffer)
        while next_start + window <= end:
            queued.append(next_start)
            next_start += stride
        drain(all_=False)
        # keep what the queued units and a last window flush with the clip's end may still need
        keep_from = min(queued[0] if queued else next_start, end - window)
        if keep_from > buffer_start:
            buffer = buffer[keep_from - buffer_start:]
            buffer_start = keep_from
    n_frames = buffer_start + len(buffer)
    sampler.check_length(n_frames, name, source)
    if (queued or starts)[-1] != n_frames - window:  # the last unit flush with the clip's end
        queued.append(n_frames - window)
    drain(all_=True)
    assert grid is not None
    lay = ClipLayout([(s, window) for s in starts], n_frames, grid, sampler.patch, frame_shape)
    return _UnitScores(lay, {k: np.concatenate(v) for k, v in raw.items()},
                       {k: np.concatenate(v) for k, v in final.items()},
                       np.concatenate(samples) if keep_samples else None, count)


def score_clip(det: Any, clip: Clip, *, maps: bool = True) -> ClipScores:
    """Score every sample of a clip and aggregate to frames (mean for clip-patches windows,
    max over patches for frame-patches)."""
    det._check_fitted()
    sampler = Sampler(det)
    t0 = time.perf_counter()
    units = _score_units(det, sampler, [clip.frames], clip.name, clip.source, keep_samples=maps)
    lay = units.layout
    rows, cols = len(lay.grid[0]), len(lay.grid[1])
    if maps:
        assert units.samples is not None
        per_sample = units.samples.reshape(len(lay.units), sampler.window // sampler.depth, rows, cols)
        cell = _cell_maps(per_sample, lay, sampler)
    else:
        cell = np.zeros((0, rows, cols))
    return ClipScores(clip.name, {k: _windows_to_frames(v, lay) for k, v in units.raw.items()},
                      {k: _windows_to_frames(v, lay) for k, v in units.final.items()}, cell, lay.grid,
                      lay.patch, lay.frame_shape, units.count, time.perf_counter() - t0)


def score_stream(det: Any, chunks: Iterable[np.ndarray], name: str = "clip", source: str = "", *,
                 total: int | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Every component's score per frame (validation-normalised) of a clip given as consecutive
    uint8 n×H×W chunks of frames: `score_clip(det, clip).final` without holding the clip.
    `progress`: a bar over the clip's frames (`total`, where known) for footage that takes long,
    shown as the model's `fit(progress=...)` chose (a loaded model: on a terminal only)."""
    from .neural import SCORE_BAR_DELAY_S
    det._check_fitted()
    chosen = getattr(det, "progress", None)
    disable = True if not progress else None if chosen is None else not chosen
    with tqdm(total=total, desc=f"{det.name} scoring {name}", unit="frame", leave=False, dynamic_ncols=True,
              delay=SCORE_BAR_DELAY_S, disable=disable) as bar:  # pragma: no mutate

        def counted() -> Iterator[np.ndarray]:
            for chunk in chunks:
                yield chunk
                bar.update(len(chunk))

        units = _score_units(det, Sampler(det), counted(), name, source, keep_samples=False)
    return {k: _windows_to_frames(v, units.layout) for k, v in units.final.items()}


def _windows_to_frames(window_scores: np.ndarray, lay: ClipLayout) -> np.ndarray:
    """A frame's score: the mean over the windows that contain it (LSA §4.2)."""
    sums, counts = np.zeros(lay.n_frames), np.zeros(lay.n_frames)
    for s, (start, length) in zip(window_scores, lay.units):
        sums[start:start + length] += s
        counts[start:start + length] += 1
    return sums / np.maximum(counts, 1)


def _cell_maps(scores: np.ndarray, lay: ClipLayout, sampler: Sampler) -> np.ndarray:
    """Per frame and patch, the headline score of the sample that covers that patch; for windows,
    each chunk's score goes to its frames, averaged over the windows that cover a frame."""
    n_units, chunks, rows, cols = scores.shape
    if sampler.kind == "frame-patches":
        return scores[:, 0]
    sums = np.zeros((lay.n_frames, rows, cols))
    counts = np.zeros(lay.n_frames)
    for u, (start, _) in enumerate(lay.units):
        for k in range(chunks):
            a = start + k * sampler.depth
            sums[a:a + sampler.depth] += scores[u, k]
            counts[a:a + sampler.depth] += 1
    return sums / np.maximum(counts, 1)[:, None, None]


def pixel_map(cs: ClipScores, frame_shape: tuple[int, int]) -> np.ndarray:
    """The cell maps painted onto frames of `frame_shape` (T×H×W): each pixel takes the mean
    score of the patches that cover it (the maximum would let one patch dominate its neighbours)."""
    h, w = cs.frame_shape
    sums = np.zeros((len(cs.cell_maps), h, w), np.float32)
    counts = np.zeros((h, w), np.float32)
    p = cs.patch
    for i, r in enumerate(cs.grid[0]):
        for j, c in enumerate(cs.grid[1]):
            sums[:, r:r + p, c:c + p] += cs.cell_maps[:, i, j, None, None]
            counts[r:r + p, c:c + p] += 1
    out = sums / np.maximum(counts, 1)
    if (h, w) != tuple(frame_shape):
        out = F.interpolate(torch.from_numpy(out)[:, None], size=tuple(frame_shape), mode="bilinear",
                            align_corners=False)[:, 0].numpy()
    return out


def normalise_per_clip(det: Any, per_clip_raw: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """LSA's video normalisation: each component min-max scaled within each test clip, then the
    method's combination."""
    out = []
    for raw in per_clip_raw:
        scaled = {k: MinMax.fit(v)(v) if k in getattr(det, "normalised", ()) else v.copy() for k, v in raw.items()}
        combined = det.combine(scaled)
        out.append({k: np.asarray(combined[k], dtype=np.float64) for k in det.components})
    return out


def smooth(scores: np.ndarray, frames: int) -> np.ndarray:
    """Centred moving average over `frames` frames (edges averaged over what exists)."""
    if frames <= 1:
        return scores
    kernel = np.ones(frames)
    num = np.convolve(scores, kernel, mode="same")
    den = np.convolve(np.ones_like(scores), kernel, mode="same")
    return num / den


# ---- metrics ---------------------------------------------------------------------------------
def frame_metrics(labels: list[np.ndarray], scores: list[np.ndarray]) -> dict[str, Any]:
    """Pooled (micro) metrics over all test frames, plus the macro AUROC over clips that have
    both normal and abnormal frames."""
    y, s = np.concatenate(labels), np.concatenate(scores)
    out = metrics.evaluate(y, s)
    per_clip = [metrics.auroc(l, c) for l, c in zip(labels, scores) if 0 < l.sum() < len(l)]
    out["auroc_macro"] = float(np.mean(per_clip)) if per_clip else None
    out["auroc_macro_clips"] = len(per_clip)
    return out


def pixel_auroc(masks: list[np.ndarray], maps: list[np.ndarray], step: int = 4) -> dict[str, Any]:
    """Pixel-level AUROC of anomaly maps against the dataset's masks, pooled over every frame of
    the clips that have masks, on a grid of every `step`-th pixel (memory; the maps are patch-
    coarse anyway)."""
    y = np.concatenate([m[:, ::step, ::step].ravel() for m in masks]).astype(np.int64)
    s = np.concatenate([p[:, ::step, ::step].ravel() for p in maps]).astype(np.float64)
    if not 0 < y.sum() < len(y):
        return {"pixel_auroc": None, "note": "the masks have no abnormal (or no normal) pixels"}
    return {"pixel_auroc": metrics.auroc(y, s), "pixel_grid_step": step, "pixels": int(len(y)),
            "abnormal_pixels": int(y.sum()), "clips": len(masks)}


# ---- fitting ------------------------------------------------------------------------------------
def fit_video(det: Any, video: VideoData | list[Clip] | list[FootageSource], seed: int | None = None,
              quantile: float | None = None, **fit_options: Any) -> dict[str, Any]:
    """Fit a video preset's detector on normal clips (`VideoData`, or footage not yet read from
    `list_footage`, which is then read a chunk at a time); returns how its samples were drawn. With
    `quantile`, also set the frame-score threshold that `predict` uses."""
    if not is_video(det):
        raise OneClassError(f"{det.name} preset {det.preset!r} is not a video preset; video presets: ped2")
    if not (isinstance(video, VideoData) or (isinstance(video, list) and video
                                             and all(isinstance(s, (Clip, FootageSource)) for s in video))):
        raise DataError("fit_video takes VideoData or a list of Clip or FootageSource (see oneclass.data.video), "
                        f"got {type(video).__name__}")
    sampler = Sampler(det)
    train, val, info = sampler.training_samples(video, det.seed if seed is None else seed,
                                                max_samples=det.config.get("max_train_samples"))
    det.fit(train, val, **fit_options)
    det.fit_info["video_samples"] = info
    if quantile is not None:
        set_frame_threshold(det, video, sampler.val_units, quantile)
    return info


def labelled_selection(det: Any, train: VideoData, test: VideoData, seed: int, n: int = 150,
                       min_abnormal: float = 0.25) -> tuple[torch.Tensor, np.ndarray, dict[str, Any]]:
    """The paper-style epoch choice's labelled set, as OLED's code builds it for Ped2: `n` normal
    patches from the training clips and `n` anomalous patches, which only the test clips have
    (patches of masked test frames with at least `min_abnormal` of their pixels abnormal). A
    result chosen with it is not label-free, and says so."""
    sampler = Sampler(det)
    if sampler.kind != "frame-patches":
        raise OneClassError("a labelled selection set of video patches is built for patch methods (ALOCC, OLED)")
    rng = np.random.default_rng([seed, 4099])
    # normal patches from the training clips' held-out frames (the same ones `fit_video` holds
    # out with this seed): never trained on
    _, normal, _ = sampler.training_samples(train, seed, max_samples=9 * n)
    outliers = []
    for clip in test.clips:
        if clip.masks is None:
            continue
        lay = sampler.layout(clip, 1)
        abnormal = [u for u in range(len(lay.units)) if clip.labels[u]]
        if not abnormal:
            continue
        x = sampler.cut(torch.from_numpy(clip.frames), lay, abnormal)
        m = sampler.cut(torch.from_numpy(clip.masks.astype(np.uint8)), lay, abnormal)
        # the mask patch is padded like the image one: count abnormal pixels inside the 30×30 part
        p = sampler.patch
        pad = (sampler.input_size - p) // 2
        fraction = m[:, 0, pad:pad + p, pad:pad + p].float().mean((1, 2)).numpy()
        outliers.append(x[torch.from_numpy(fraction >= min_abnormal)])
    pool = torch.cat(outliers) if outliers else torch.empty(0)
    if len(pool) < n:
        raise DataError(f"only {len(pool)} anomalous patches in the masked test clips; the selection needs {n}")
    chosen = pool[torch.from_numpy(np.sort(rng.choice(len(pool), n, replace=False)))]
    images = torch.cat([normal[:n], chosen])
    labels = np.concatenate([np.zeros(min(n, len(normal)), np.int64), np.ones(n, np.int64)])
    info = {"selection": f"{min(n, len(normal))} normal patches of held-out training frames + {n} anomalous patches of masked "
                         f"test frames (≥ {min_abnormal:.0%} abnormal pixels), as OLED's code picks its Ped2 epoch",
            "label_free": False, "selection_seed": seed}
    return images, labels, info


def set_frame_threshold(det: Any, video: VideoData | list[Clip] | list[FootageSource], units: list[tuple[str, int]],
                        quantile: float, max_units: int = 200) -> float:
    """`predict`'s threshold in frame-score units: the `quantile` of the scores of held-out
    training frames (frame-patches) or windows (clip-patches; a frame's score is a mean of them)."""
    sampler = Sampler(det)
    rng = np.random.default_rng(det.seed)
    if len(units) > max_units:
        units = [units[i] for i in np.sort(rng.choice(len(units), max_units, replace=False))]
    by_clip = {c.name: c for c in (video.clips if isinstance(video, VideoData) else video)}
    scores = []
    for name in sorted({n for n, _ in units}):
        clip = by_clip[name]
        lay = sampler.layout(clip, sampler.train_stride)
        x = torch.cat(sampler.cut_streamed(clip, lay, sorted(u for n, u in units if n == name)))
        raw = det._raw(det.prepare(x))
        final = det.finalise(raw)
        per_unit = np.asarray(final[det.headline]).reshape(-1, sampler.samples_per_unit(lay))
        scores.append(per_unit.max(1) if sampler.kind == "frame-patches" else per_unit.mean(1))
    det.threshold = float(np.quantile(np.concatenate(scores), quantile))
    det.threshold_rule = {"quantile": quantile, "of": "held-out training frame (window) scores"}
    return det.threshold


def clip_plot_png(name: str, scores: np.ndarray, labels: np.ndarray | None, title: str,
                  threshold: float | None = None) -> bytes:
    """A PNG of one clip's score over time, abnormal frames shaded (OLED's Fig. 4 is the idea) and
    the model's frame threshold drawn where it has one."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.0), dpi=100)
    t = np.arange(len(scores))
    if labels is not None and labels.any():
        ax.fill_between(t, 0, 1, where=labels.astype(bool), transform=ax.get_xaxis_transform(),
                        color="tab:red", alpha=0.18, linewidth=0, label="abnormal (ground truth)")
    ax.plot(t, scores, color="tab:blue", linewidth=1.2)
    if threshold is not None:
        flagged = int((scores > threshold).sum())
        ax.axhline(threshold, color="tab:orange", linestyle="--", linewidth=1.0,
                   label=f"threshold ({flagged} of {len(scores)} frames above)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.set_xlim(0, max(len(scores) - 1, 1))
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel("novelty", fontsize=8)
    ax.set_title(f"{title} — clip {name}", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def footage_scores(det: Any, footage: VideoData | str | os.PathLike) -> np.ndarray:
    """The headline score of every frame of `footage`, all clips pooled: what a frame threshold
    is set from (`det.threshold_from_scores(footage_scores(det, f), threshold_rule(quantile=0.99))`)."""
    return np.concatenate([scores[det.headline] for _, scores in score_footage(det, footage)])


def score_footage(det: Any, footage: VideoData | str | os.PathLike) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Per clip of a user's footage, (its name, every component's score per frame, validation-
    normalised). Footage given as a path (a video file, a folder of them, of frames or of frame
    folders) is read a chunk of frames at a time, so its length is not bounded by memory."""
    if not is_video(det):
        raise OneClassError(f"this {det.name} model (preset {det.preset!r}) scores images, not video")
    if isinstance(footage, VideoData):
        return [(c.name, score_stream(det, [c.frames], c.name, c.source)) for c in footage.clips]
    return [(s.name, score_stream(det, s.chunks(), s.name, s.source, total=s.estimated_len(), progress=True))
            for s in list_footage(footage)]
