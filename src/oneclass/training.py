"""The one training loop every neural method uses.

A method (a `NeuralDetector`) owns its networks and optimisers and says what one training step
does (`train_step`: one or several alternating updates) and what its validation losses are;
this loop owns everything else: epochs and shuffling, devices, seeding, the progress bar, the
per-epoch JSONL log, keeping the best epoch, early stopping, checkpoints and resumption.

Determinism: the shuffle and the noise of epoch e come from generators seeded with (seed, e),
and a checkpoint holds every network, optimiser and best-epoch state, so a run resumed from
its last checkpoint takes exactly the steps the uninterrupted run would have taken."""
from __future__ import annotations

import io
import json
import math
import os
import random
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import OneClassError
from .fileio import archive_damage, atomic_open

# configuration keys that change how a run is carried out, not its numbers (the memory format,
# like the device, picks other kernels for the same FP32 maths, and `fast_tanh` another FP32
# formula within 2e-7; results/README.md shows the AUROCs of both paths): they neither name a
# run nor stop a checkpoint from resuming
EXECUTION_ONLY = frozenset({"score_batch_size", "checkpoint_every_s", "channels_last", "fast_tanh",
                            "gemm_small_maps"})


def numeric_config(config: dict[str, Any], added_later: dict[str, Any] | None = None) -> dict[str, Any]:
    """The part of a method's configuration that changes its numbers, less the options the method
    added later (`Detector.added_later`) at the value that keeps its old behaviour."""
    later = added_later or {}
    return {k: v for k, v in config.items() if k not in EXECUTION_ONLY and not (k in later and later[k] == v)}


def numerics(method: Any) -> AbstractContextManager:
    """The arithmetic a method's training steps run in (`NeuralDetector.autocast`: option
    `precision`); as they are written for a method without one. Validation is never in it."""
    autocast = getattr(method, "autocast", None)
    return autocast() if autocast is not None else nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + epoch)
    return g


@dataclass
class StepContext:
    """What a method's train_step may use besides the batch."""
    epoch: int
    step: int                 # global step count
    generator: torch.Generator  # for noise, masks: seeded per epoch


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float | None = None
    epochs_run: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    stopped_early: bool = False
    resumed_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "best_value": self.best_value, "epochs_run": self.epochs_run,
                "train_seconds": self.seconds, "train_images_per_second": self.images_per_second,
                "stopped_early": self.stopped_early, "resumed_from": self.resumed_from}


def epoch_steps(n: int, batch_size: int) -> int:
    """Optimisation steps in one epoch over n samples: every sample once; a last batch of a
    single sample is dropped (batch norm cannot normalise one sample)."""
    return max(1, math.ceil(n / batch_size) - (1 if n % batch_size == 1 else 0))


class Trainer:
    """Train `method` on uint8 image tensors.

    select: name of the validation quantity to minimise for the best epoch ("last" keeps the
    final epoch). patience: stop after this many epochs without improvement (None: never)."""

    def __init__(self, *, epochs: int, batch_size: int, seed: int, device: torch.device,
                 select: str = "last", patience: int | None = None, checkpoint: str | os.PathLike | None = None,
                 resume: bool = False, log_path: str | os.PathLike | None = None, progress: bool = True,
                 val_batch_size: int = 1024, checkpoint_every_s: float = 60.0) -> None:
        self.epochs, self.batch_size, self.seed, self.device = int(epochs), int(batch_size), int(seed), device
        self.select, self.patience = select, patience
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.resume, self.progress = resume, progress
        self.log_path = Path(log_path) if log_path else None
        self.val_batch_size = val_batch_size
        # a checkpoint holds networks, optimiser moments and the best state (hundreds of MB for
        # LSA's MFC stack): write one at most this often, and after the last epoch
        self.checkpoint_every_s = checkpoint_every_s

    def fit(self, method: "Any", train: torch.Tensor, val: torch.Tensor) -> TrainResult:
        seed_everything(self.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
        result = TrainResult()
        train = train.to(self.device)  # uint8 on the device: batches are sliced, never copied per sample
        val = val.to(self.device)
        n = len(train)
        steps_per_epoch = epoch_steps(n, self.batch_size)
        start_epoch, patience_left, best_state = 1, self.patience, None
        if self.resume and self.checkpoint is not None and self.checkpoint.is_file():
            ck = self._load_checkpoint(method)
            start_epoch = ck["epoch"] + 1
            result.history, result.best_epoch, result.best_value = ck["history"], ck["best_epoch"], ck["best_value"]
            best_state, patience_left = ck["best_state"], ck["patience_left"]
            result.resumed_from = ck["epoch"]
            result.seconds = ck["seconds"]
            self._truncate_log(ck["epoch"])
        elif self.log_path is not None and self.log_path.exists():
            self.log_path.unlink()  # a fresh run starts a fresh log
        trained_images, this_call_seconds, last_checkpoint = 0, 0.0, time.monotonic()
        stop = bool(result.history) and bool(result.history[-1].get("stopped_early", False))
        for epoch in range(start_epoch, self.epochs + 1):
            if stop:
                break
            t0 = time.perf_counter()
            if hasattr(method, "on_epoch_start"):  # e.g. Deep SVDD fixes its centre when pretraining ends
                method.on_epoch_start(epoch, train)
            method.train_mode(True)
            g = epoch_generator(self.seed, epoch, self.device)
            perm = torch.randperm(n, generator=g, device=self.device)
            sums: dict[str, torch.Tensor] = {}
            shown_at = time.monotonic()  # pragma: no mutate
            # the live bar is display only (mutation runs skip it); the epoch line below is tested
            bar = tqdm(range(steps_per_epoch), desc=f"{method.name} epoch {epoch}/{self.epochs}",  # pragma: no mutate
                       disable=not self.progress, leave=False, dynamic_ncols=True)  # pragma: no mutate
            for i in bar:
                index = perm[i * self.batch_size:(i + 1) * self.batch_size]
                ctx = StepContext(epoch, (epoch - 1) * steps_per_epoch + i, g)
                with numerics(method):
                    losses = method.train_step(train[index], ctx)
                for k, v in losses.items():  # summed on the device: no sync per step
                    sums[k] = sums[k] + v if k in sums else torch.as_tensor(v, dtype=torch.float32).clone()
                # the running losses about once a second, whatever a step takes (reading them syncs
                # the device, so not every step)
                if self.progress and (time.monotonic() - shown_at >= 1.0 or i == steps_per_epoch - 1):  # pragma: no mutate
                    bar.set_postfix({k: f"{float(v) / (i + 1):.4g}" for k, v in sums.items()})  # pragma: no mutate
                    shown_at = time.monotonic()  # pragma: no mutate
            bar.close()
            trained_images += len(perm) - (1 if n % self.batch_size == 1 and n > 1 else 0)
            train_losses = {k: float(v) / steps_per_epoch for k, v in sums.items()}
            if not all(math.isfinite(v) for v in train_losses.values()):
                raise OneClassError(f"training diverged at epoch {epoch} (losses {train_losses}); "
                                    "try a lower learning rate")
            val_losses = self._validate(method, val)
            if hasattr(method, "epoch_metrics"):
                val_losses.update(method.epoch_metrics())
            seconds = time.perf_counter() - t0
            result.seconds += seconds
            this_call_seconds += seconds
            record = {"epoch": epoch, "train": train_losses, "val": val_losses, "seconds": round(seconds, 3),
                      "train_images_per_second": round(n / seconds, 1)}
            value = val_losses.get(self.select) if self.select != "last" else None
            if self.select != "last" and value is None:
                raise OneClassError(f"selection criterion {self.select!r} is not among the validation "
                                    f"quantities {sorted(val_losses)}")
            if self.select == "last" or result.best_value is None or value < result.best_value:
                result.best_epoch, result.best_value = epoch, value
                best_state = method.state_dicts() if self.select != "last" else None
                patience_left = self.patience
            elif patience_left is not None:
                patience_left -= 1
                if patience_left <= 0:
                    record["stopped_early"] = True
                    stop = True
            if not stop and getattr(method, "should_stop", None) is not None and method.should_stop(val_losses):
                record["stopped_early"] = True  # the method's own stopping rule (e.g. ALOCC's ρ)
                stop = True
            last = epoch == self.epochs or stop
            watched = method.watch_metrics(epoch, last) if hasattr(method, "watch_metrics") else {}
            if watched:  # after the timing: a diagnosis the run's throughput does not pay for
                record["watch"] = watched
            result.history.append(record)
            self._log(record)
            if self.checkpoint is not None and (last or time.monotonic() - last_checkpoint >= self.checkpoint_every_s):
                self._save_checkpoint(method, epoch, result, best_state, patience_left)
                last_checkpoint = time.monotonic()
            if self.progress:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in {**train_losses, **{f"val_{k}": v for k, v in val_losses.items()}}.items())
                tqdm.write(f"{method.name} epoch {epoch}/{self.epochs}: {shown} ({seconds:.1f}s)")
        if best_state is not None:
            method.load_state_dicts(best_state)
        method.train_mode(False)
        result.epochs_run = len(result.history)
        result.stopped_early = bool(result.history and result.history[-1].get("stopped_early", False))
        if trained_images:  # epochs run in this call, validation included
            result.images_per_second = trained_images / max(this_call_seconds, 1e-9)
        return result

    @torch.inference_mode()
    def _validate(self, method: Any, val: torch.Tensor) -> dict[str, float]:
        method.train_mode(False)
        totals: dict[str, float] = {}
        for start in range(0, len(val), self.val_batch_size):
            batch = val[start:start + self.val_batch_size]
            for k, v in method.validation_losses(batch).items():  # per-sample values
                totals[k] = totals.get(k, 0.0) + float(v.sum())
        return {k: v / len(val) for k, v in totals.items()}

    # ---- checkpoints and log -------------------------------------------------------------
    def _save_checkpoint(self, method: Any, epoch: int, result: TrainResult, best_state: Any,
                         patience_left: int | None) -> None:
        payload = {"epoch": epoch, "method": method.name, "config": method.config, "seed": self.seed,
                   "state": method.state_dicts(), "optimizers": method.optimizer_state_dicts(),
                   "best_state": best_state, "best_epoch": result.best_epoch, "best_value": result.best_value,
                   "history": result.history, "patience_left": patience_left, "seconds": result.seconds}
        buf = io.BytesIO()
        torch.save(payload, buf)
        with atomic_open(self.checkpoint) as fh:
            fh.write(buf.getvalue())

    def _load_checkpoint(self, method: Any) -> dict[str, Any]:
        damage = archive_damage(self.checkpoint)
        if damage:
            raise OneClassError(f"cannot resume: checkpoint {self.checkpoint} is corrupt ({damage}); "
                                "delete it to start over")
        try:
            ck = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        except Exception as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""  # torch's own text runs to a page
            raise OneClassError(f"cannot resume: checkpoint {self.checkpoint} is unreadable "
                                f"({type(e).__name__}: {first_line}); delete it to start over") from e
        later = getattr(method, "added_later", {})
        saved, current = numeric_config(ck.get("config") or {}, later), numeric_config(method.config, later)
        if ck.get("method") != method.name or saved != current or ck.get("seed") != self.seed:
            # name the keys, so an option added since the checkpoint was written shows as the cause
            keys = sorted(k for k in set(saved) | set(current) if saved.get(k, ...) != current.get(k, ...))
            raise OneClassError(f"cannot resume: checkpoint {self.checkpoint} belongs to another configuration "
                                f"({ck.get('method')}, seed {ck.get('seed')}"
                                + (f"; differs in {', '.join(keys)}" if keys else "") + "); delete it to start over")
        method.load_state_dicts(ck["state"])
        method.load_optimizer_state_dicts(ck["optimizers"])
        return ck

    def _log(self, record: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def _truncate_log(self, last_epoch: int) -> None:
        """Drop log lines of epochs after the checkpoint (written before a kill), and a line the
        kill cut off mid-write."""
        if self.log_path is None or not self.log_path.exists():
            return
        kept = [line for line in self.log_path.read_text().splitlines()
                if (epoch := logged_epoch(line)) is not None and epoch <= last_epoch]
        with atomic_open(self.log_path, "w") as fh:
            fh.write("".join(line + "\n" for line in kept))


def logged_epoch(line: str) -> int | None:
    """The epoch of a JSONL log line; None for a blank line or one cut off mid-write."""
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None
