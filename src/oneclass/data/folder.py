"""Folders of image files: `<root>/train/<class>/*.png|jpg` (optional `test/`), or a flat folder.

Decoding tens of thousands of small files is the slow part, so a decoded folder is cached as one
uint8 `.npz` keyed on the file list, sizes and modification times (any change rebuilds it)."""
from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..fileio import atomic_open
from .images import ImageData, conform, convert_image

# how files become pixels, in the key of a decoded folder's cache: a change re-decodes
DECODING = "exif-upright, conform-resize"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def list_images(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted. Hidden entries are not data: a Mac's `._x.png`
    (resource forks on a copied drive) is no PNG, `.ipynb_checkpoints/` no class."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_name(p))


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def hidden_under(path: Path, folder: Path) -> bool:
    """Whether `path` or a folder between it and `folder` is hidden (its name starts with a dot)."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def tree_images(folder: Path) -> list[Path]:
    """Every image file under `folder`, sorted; none inside a hidden folder (see `list_images`)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p) and not hidden_under(p, folder))


def sub_folders(folder: Path) -> list[str]:
    """The names of the visible folders directly in `folder`, sorted: the classes of a split."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def max_image_pixels() -> int:
    """The largest image (width × height) a file may declare before it is decoded:
    `$ONECLASS_MAX_IMAGE_PIXELS`, default 50 million (a decompression bomb is refused, not decoded)."""
    try:
        return int(os.environ.get("ONECLASS_MAX_IMAGE_PIXELS", 50_000_000))
    except ValueError as e:
        raise DataError(f"ONECLASS_MAX_IMAGE_PIXELS must be a whole number, got "
                        f"{os.environ['ONECLASS_MAX_IMAGE_PIXELS']!r}") from e


def open_image(path: Path, mode: str) -> Image.Image:
    """An image file decoded into PIL mode "L" or "RGB", turned upright by its EXIF orientation
    (a phone's photo as a viewer shows it). Every common mode is converted (1, L, P, RGB, RGBA
    without its alpha, CMYK, LA); 16-bit grey (I;16) is scaled to 8 bits rather than clipped;
    32-bit integer and float images are refused, as is a file declaring more pixels than
    `max_image_pixels()`. Errors name the file."""
    limit = max_image_pixels()
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > limit:
                raise DataError(f"image {path} is {w}×{h} = {w * h:,} pixels, over the limit of {limit:,} "
                                "(set ONECLASS_MAX_IMAGE_PIXELS to allow larger images)")
            out = convert_image(im, mode, f"image {path}")
            out.load()
            return out
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}") from e


def read_image(path: Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """One image file → uint8 C×H×W, converted to grey or RGB and resized if asked, by `conform`:
    the file gives the very pixels its image would as a PIL image or an array in the Python API."""
    arr = np.array(open_image(path, "L" if channels == 1 else "RGB"), dtype=np.uint8)
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    if size is not None and arr.shape[1:] != tuple(size):
        return conform(torch.from_numpy(np.ascontiguousarray(arr))[None], channels, size)[0].numpy()
    return arr


def read_images(paths: list[Path], channels: int, size: tuple[int, int] | None) -> torch.Tensor:
    """Decode many files in threads (PIL releases the GIL while decoding); all must share a size."""
    if not paths:
        raise DataError("no image files to read")
    with ThreadPoolExecutor(max_workers=8) as pool:
        arrays = list(pool.map(lambda p: read_image(p, channels, size), paths))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"images differ in size {sorted(shapes)[:3]}…; give a size to resize them to")
    return torch.from_numpy(np.stack(arrays))


def image_paths(x: Any, name: str = "input") -> list[Path] | None:
    """The image files `x` names in the Python API, or None when `x` is not a path: a folder (every
    image under it, sorted by path, as `oneclass score --input` reads it), one image file, or a
    list (or 1-D string array) of image files, in its order. A folder in the labelled or MVTec layout
    (`train/` and `test/` inside) is refused: its images are normal and novel ones together."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "US":
        if x.ndim != 1:
            raise DataError(f"{name}: an array of strings shaped {x.shape}; file paths go as one list")
        x = x.tolist()
    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        if path.is_dir():
            if (path / "train").is_dir() and (path / "test").is_dir():
                raise DataError(f"{name}: {path} holds train/ and test/ folders (a labelled layout), whose "
                                f"images are normal and novel together; pass the folder of the images "
                                f"themselves, e.g. {path / 'train' / (sub_folders(path / 'train') or ['good'])[0]}")
            files = tree_images(path)
            if not files:
                raise DataError(f"{name}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {path}")
            return files
        if not path.is_file():
            raise DataError(f"{name}: no such file or folder: {path}")
        return [path]
    if isinstance(x, (list, tuple)) and x and all(isinstance(item, (str, os.PathLike)) for item in x):
        files = [Path(item) for item in x]
        for i, path in enumerate(files):
            if path.is_dir():
                raise DataError(f"{name}: item {i}, {path}, is a folder; a list names image files "
                                "(pass a folder on its own for every image under it)")
            if not path.is_file():
                raise DataError(f"{name}: item {i}: no such file: {path}")
        return files
    return None


def looks_colour(files: list[Path], sample: int = 16) -> bool:
    """Whether images are in colour, from up to `sample` files spread over the list: one in which at
    least 1% of the pixels have channels more than 16 levels apart. A grey picture saved as RGB or
    JPEG, or with a camera's few levels of colour noise, stays grey; a near-grey photograph may count
    as grey, and loses little as such."""
    for f in files[:: max(1, len(files) // sample)][:sample]:
        rgb = np.asarray(open_image(f, "RGB"), dtype=np.int16)
        if ((rgb.max(axis=2) - rgb.min(axis=2)) > 16).mean() >= 0.01:
            return True
    return False


def _signature(files: list[Path], channels: int, size) -> str:
    h = hashlib.sha256(f"{DECODING}|{channels}|{size}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def load_class_folder(split_dir: str | Path, channels: int, size: tuple[int, int] | None,
                      classes: list[str] | None = None, cache_dir: Path | None = None) -> ImageData:
    """`split_dir/<class>/*.ext` → ImageData with labels indexing the sorted class names."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"missing folder {split_dir}")
    if classes is None:
        classes = sub_folders(split_dir)
    if not classes:
        raise DataError(f"{split_dir} has no class sub-folders (expected {split_dir}/<class>/*.png)")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        found = list_images(class_dir) if class_dir.is_dir() else []
        files += found
        labels += [label] * len(found)
    if not files:
        raise DataError(f"no image files under {split_dir}/<class>/")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"folder-{_signature(files, channels, size)}.npz"
        if cache.is_file():
            try:
                with np.load(cache) as z:
                    images = torch.from_numpy(z["images"])
                if len(images) == len(files):
                    return ImageData(images, torch.tensor(labels), classes, [str(f) for f in files])
            except Exception:
                pass  # a damaged cache is rebuilt below
    images = read_images(files, channels, size)
    if cache is not None:
        buf = io.BytesIO()
        np.savez(buf, images=images.numpy())
        with atomic_open(cache) as fh:
            fh.write(buf.getvalue())
    return ImageData(images, torch.tensor(labels, dtype=torch.long), classes, [str(f) for f in files])


def flat_folder_files(folder: Path) -> list[Path]:
    """The images directly inside `folder`, else every image in the tree below it (a class-folder
    tree taken whole); none is an error naming the folder."""
    files = list_images(folder)
    if not files:
        files = tree_images(folder)
    if not files:
        raise DataError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


def load_flat_folder(folder: str | Path, channels: int, size: tuple[int, int] | None) -> ImageData:
    """All images directly inside `folder` (a user's folder of normal samples), label 0."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}")
    files = flat_folder_files(folder)
    images = read_images(files, channels, size)
    return ImageData(images, torch.zeros(len(files), dtype=torch.long), ["normal"], [str(f) for f in files])


def load_labelled_folder(root: str | Path, channels: int, size: tuple[int, int] | None,
                         cache_dir: Path | None = None) -> tuple[ImageData, ImageData]:
    """A user's labelled folder for `evaluate`: `root/train/<class>/` and `root/test/<class>/`.
    Each training class can be the normal one in turn (one, e.g. `good`, is enough); a test folder
    with no training counterpart (`test/scratch/`) is a class of its own after the training ones,
    novel whichever class is normal."""
    root = check_labelled_folder(root)
    train = load_class_folder(root / "train", channels, size, cache_dir=cache_dir)
    test_names = sub_folders(root / "test")
    classes = train.classes + [n for n in test_names if n not in train.classes]
    test = load_class_folder(root / "test", channels, size, classes, cache_dir)
    return train, test


def check_labelled_folder(root: str | Path) -> Path:
    """`root` if it has the labelled layout (`train/<class>/` and `test/`), else an error saying what
    is expected."""
    root = Path(root)
    if not (root / "train").is_dir() or not (root / "test").is_dir() or not sub_folders(root / "train"):
        raise DataError(f"{root} is not a labelled image folder: expected {root}/train/<class>/ (normal images, "
                        f"e.g. train/good/) and {root}/test/<class>/ (e.g. test/good/ and test/defect/); "
                        "`fit --train-dir` takes a folder of normal images alone")
    return root


def describe_labelled_folder(root: str | Path) -> str:
    """Which files a labelled folder holds, for a run's identity: its classes and a digest of
    every image's path (relative to the folder) and size, so other data in the same place is
    another run and the same folder moved elsewhere is the same."""
    root = Path(root)
    h = hashlib.sha256()
    files = [p for split in ("train", "test") if (root / split).is_dir() for p in tree_images(root / split)]
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}|{f.stat().st_size}\n".encode())
    classes = sorted({f.relative_to(root).parts[1] for f in files if len(f.relative_to(root).parts) > 2})
    return f"image folder {root.name}: {', '.join(classes)} ({len(files)} files, {h.hexdigest()[:10]})"
