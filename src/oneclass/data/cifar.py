"""CIFAR-10 / CIFAR-100 python pickle batches (`cifar-10-batches-py/`, `cifar-100-python/`).

The batches are pickles; a plain `pickle.load` would run any code a tampered file names, so a
restricted unpickler admits only the NumPy array reconstruction the real files use."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .images import ImageData

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _SafeUnpickler(fh, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated or foreign pickles raise many different types
        raise DataError(f"{path}: not a readable CIFAR batch ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR batch (a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _batch_arrays(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = read_batch(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: CIFAR batch lacks 'data' or '{label_key}' (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' should be uint8 N×3072, got {data.dtype} {data.shape}")
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _names(meta_path: Path, key: str) -> list[str]:
    meta = read_batch(meta_path)
    if key not in meta:
        raise DataError(f"{meta_path}: no '{key}' in the metadata")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def load_cifar10_split(folder: str | Path, split: str) -> ImageData:
    folder = Path(folder)
    parts = []
    for name in CIFAR10_FILES[split]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"missing file {path}")
        parts.append(_batch_arrays(path, "labels"))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    meta = folder / "batches.meta"
    classes = _names(meta, "label_names") if meta.is_file() else [str(i) for i in range(10)]
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{folder}: labels outside 0..{len(classes) - 1}")
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), classes)


def load_cifar100_split(folder: str | Path, split: str, label: str = "coarse") -> ImageData:
    """CIFAR-100 with its 20 coarse super-classes (the usual one-class protocol) or 100 fine labels."""
    folder = Path(folder)
    path = folder / split
    if not path.is_file():
        raise DataError(f"missing file {path}")
    images, labels = _batch_arrays(path, f"{label}_labels")
    meta = folder / "meta"
    n = 20 if label == "coarse" else 100
    classes = _names(meta, f"{label}_label_names") if meta.is_file() else [str(i) for i in range(n)]
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), classes)
