"""Finished scoring batches of a long scoring pass, kept on disk so an interrupted run resumes at
its first unfinished batch instead of scoring everything again.

Scoring is most of some runs: AnoGAN's latent search takes about two hours for MNIST's 10,000
test digits on one CPU thread, against 17 minutes of training. The trainer's checkpoint keeps the
trained networks; this store keeps the scores computed with them.

An entry is found by what the scores depend on, never by a name: the method, its seed and numeric
configuration, the device type, every weight of every network (a hash of their bytes), the
scoring function and the input images (a hash of their bytes). Scores of another model state or
other images can therefore never be handed back. The file holds the entries of one model state
only: a store is made for the trained model when `fit` ends (the weights are hashed once, there),
and another model's store replaces the file's entries.

The file is a `torch.save` archive written atomically; a damaged or unreadable one is ignored
with a warning and scoring starts over, since recomputing gives the same scores."""
from __future__ import annotations

import hashlib
import io
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .fileio import archive_damage, atomic_open
from .training import numeric_config


def store_path(checkpoint: str | Path) -> Path:
    """Where the scores of a run checkpointed at `checkpoint` are kept (`x.ckpt` → `x.scores.ckpt`)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".scores.ckpt")


def remove_checkpoint(checkpoint: str | Path) -> None:
    """A finished run's checkpoint and its kept scores are removed: the saved model or the run's
    JSON is what stays."""
    for path in (Path(checkpoint), store_path(checkpoint)):
        if path.exists():
            path.unlink()


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    t = t.detach().cpu().contiguous().reshape(-1)  # a 0-d tensor cannot be viewed as bytes
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def model_key(det: Any) -> str:
    """What a detector's raw scores depend on besides the input: method, seed, numeric config,
    device type and the bytes of every network weight and buffer."""
    h = hashlib.blake2b(digest_size=16)
    # an option added later, at the value that keeps the old behaviour, changes no score
    config = numeric_config(det.config, getattr(det, "added_later", {}))
    h.update(json.dumps([det.name, det.seed, det.device.type, config], sort_keys=True, default=str).encode())
    for net, state in sorted(det.state_dicts().items()):
        for name, t in sorted(state.items()):
            h.update(f"{net}.{name}".encode())
            _hash_tensor(h, t)
    return h.hexdigest()


def input_key(fn: Callable, images: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(getattr(fn, "__name__", repr(fn)).encode())
    _hash_tensor(h, images)
    return h.hexdigest()


class ScoreStore:
    """The kept scores of one model state (`model`: its `model_key`) in one run's file.
    `every_s`: how often a pass in progress is saved (the trainer's `checkpoint_every_s`); a pass
    shorter than that is never written."""

    def __init__(self, path: str | Path, model: str, every_s: float = 60.0) -> None:
        self.path, self.model, self.every_s = Path(path), model, float(every_s)
        # the file as this store last read or wrote it: a video's many short passes (one per batch
        # of windows) then read the file once, not once a pass; only this store writes it
        self._known: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any] | None:
        if self._known is not None:
            return self._known
        if not self.path.is_file():
            return None
        damage = archive_damage(self.path)
        try:
            if damage:
                raise ValueError(damage)
            stored = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(stored, dict) or not isinstance(stored.get("entries"), dict):
                raise ValueError("not a store of scores")
        except Exception as e:  # kept scores are a saving of time, never a result: recompute them
            warnings.warn(f"kept scores {self.path} are unreadable ({e}); scoring from the start", stacklevel=4)
            return None
        self._known = stored
        return stored

    def kept_images(self) -> int:
        """How many images' scores the file keeps, over every pass (what `reproduce --dry-run`
        shows of a run under way); 0 for a missing or unreadable file."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a listing, not a scoring: nothing to warn about here
            stored = self._read()
        return 0 if stored is None else sum(int(e["done"]) for e in stored["entries"].values())

    def load(self, inputs: str) -> tuple[int, dict[str, list[np.ndarray]], float]:
        """(images already scored, their scores per component, seconds spent on them) for this
        store's model state and the input; (0, {}, 0.0) when nothing is kept."""
        stored = self._read()
        if stored is None or stored.get("model") != self.model or inputs not in stored["entries"]:
            return 0, {}, 0.0
        entry = stored["entries"][inputs]
        parts = {k: [v.numpy()] for k, v in entry["scores"].items()}
        return int(entry["done"]), parts, float(entry["seconds"])

    def save(self, inputs: str, done: int, parts: dict[str, list[np.ndarray]], seconds: float) -> None:
        stored = self._read()
        entries = stored["entries"] if stored is not None and stored.get("model") == self.model else {}
        entries[inputs] = {"done": int(done), "seconds": float(seconds),
                           "scores": {k: torch.from_numpy(np.concatenate(v)) for k, v in parts.items()}}
        buf = io.BytesIO()
        torch.save({"model": self.model, "entries": entries}, buf)
        with atomic_open(self.path) as fh:
            fh.write(buf.getvalue())
        self._known = {"model": self.model, "entries": entries}


class ScoringPass:
    """One `_batched` pass with a store: where it starts, and saving its progress as it goes.
    Without a store it only counts (nothing is hashed or written)."""

    def __init__(self, store: ScoreStore | None, fn: Callable, images: torch.Tensor) -> None:
        self.store, self.fn, self.images = store, fn, images
        self.inputs: str | None = None  # hashed when first needed
        self.done, self.parts, self.earlier_seconds = 0, {}, 0.0
        if store is not None and store.path.is_file():
            self.inputs = input_key(fn, images)
            self.done, self.parts, self.earlier_seconds = store.load(self.inputs)
        self.done_at_start = self.done
        self.started = self.last_saved = time.monotonic()

    def add(self, out: dict[str, np.ndarray], n: int) -> None:
        for k, v in out.items():
            self.parts.setdefault(k, []).append(v)
        self.done += n
        if self.store is not None and time.monotonic() - self.last_saved >= self.store.every_s:
            self._save()

    def finish(self) -> None:
        """A pass that lasted long enough to be saved is saved whole (the validation scores
        after training, kept while the test set is scored)."""
        if self.store is not None and time.monotonic() - self.started >= self.store.every_s:
            self._save()

    @property
    def resumed(self) -> dict[str, Any] | None:
        """What this pass took from the store (None: it scored every image itself)."""
        if self.done_at_start == 0:
            return None
        return {"images": self.done_at_start, "earlier_seconds": round(self.earlier_seconds, 3)}

    def _save(self) -> None:
        if self.inputs is None:
            self.inputs = input_key(self.fn, self.images)
        seconds = self.earlier_seconds + time.monotonic() - self.started
        self.store.save(self.inputs, self.done, self.parts, seconds)
        self.last_saved = time.monotonic()
