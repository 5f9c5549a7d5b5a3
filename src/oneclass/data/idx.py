"""MNIST / Fashion-MNIST: IDX files (optionally gzipped) in torchvision's layout."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .images import ImageData

# IDX type codes (third byte of the magic number); MNIST uses only unsigned bytes.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | Path, expect_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file, validating its magic number, dimensions and length."""
    path = Path(path)
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:  # gzip raises these for truncated or non-gzip data
        raise DataError(f"{path}: cannot read ({e}); the file is corrupt or truncated") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    if expect_ndim is not None and ndim != expect_ndim:
        raise DataError(f"{path}: expected a {expect_ndim}-dimensional IDX file, found {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes where shape {shape} needs {expected}; "
                        "the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"missing file {folder / stem}(.gz)")


def load_idx_split(folder: str | Path, split: str, classes: list[str]) -> ImageData:
    """Images and labels of one split from a folder holding the four IDX files."""
    folder = Path(folder)
    img_stem, lbl_stem = SPLIT_FILES[split]
    images = read_idx(find_idx_file(folder, img_stem), expect_ndim=3)
    labels = read_idx(find_idx_file(folder, lbl_stem), expect_ndim=1)
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels in the {split} split")
    if labels.size and int(labels.max()) >= len(classes):
        raise DataError(f"{folder}: label {int(labels.max())} outside the {len(classes)} classes")
    return ImageData(torch.from_numpy(images.copy()).unsqueeze(1),
                     torch.from_numpy(labels.astype(np.int64)), list(classes))
