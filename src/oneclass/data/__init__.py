"""Datasets by name, read from a data root in their standard layouts.

    >>> from oneclass import datasets
    >>> datasets.names()
    >>> train, test = datasets.load("mnist", data_root="../shared/datasets")
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DataError
from .cifar import load_cifar10_split, load_cifar100_split
from .folder import (check_labelled_folder, describe_labelled_folder, flat_folder_files, load_class_folder,
                     load_flat_folder, load_labelled_folder, looks_colour)
from .idx import load_idx_split
from .images import ImageData, as_uint8_images, conform, to_float

__all__ = ["ImageData", "names", "load", "describe", "default_data_root", "cache_dir", "is_video",
           "as_uint8_images", "conform", "to_float", "load_folder", "folder_in_colour", "embedded", "model_shaped"]

EMBEDDED_FILE = Path(__file__).with_name("mnist_embedded.npz")

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def default_data_root() -> Path:
    """`$ONECLASS_DATA`, else `~/.cache/oneclass`."""
    return Path(os.environ.get("ONECLASS_DATA") or Path.home() / ".cache" / "oneclass").expanduser()


def data_root_path(data_root: str | os.PathLike | None) -> Path:
    """The data root a call names, else `default_data_root()`."""
    return Path(data_root).expanduser() if data_root else default_data_root()


def cache_dir() -> Path:
    """Where derived files (decoded image folders, extracted archives) go: `$ONECLASS_CACHE`,
    else `~/.cache/oneclass/cache`. Never inside the data root, which may be read-only."""
    return Path(os.environ.get("ONECLASS_CACHE") or Path.home() / ".cache" / "oneclass" / "cache").expanduser()


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    loader: Callable[..., tuple[Any, Any]]
    kind: str = "images"  # or "video": (train, test) are VideoData
    # folders of image files of any size are decoded at the model's input (channels, size), given
    # to the loader, rather than decoded whole and resized afterwards
    model_shaped: bool = False


def _idx_folder(root: Path, sub: str) -> Path:
    """torchvision layout `<root>/<sub>/raw/`, or the four files directly in `root`."""
    for folder in (root / sub / "raw", root / sub, root):
        if any((folder / f).exists() for f in ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")):
            return folder
    raise DataError(f"{sub} not found: expected {root / sub / 'raw'}/train-images-idx3-ubyte(.gz) and the "
                    f"other three IDX files (or them directly in {root}); "
                    f"fetch them with `oneclass download {sub.lower()} --data-root {root}` when online")


def _load_mnist(root: Path) -> tuple[ImageData, ImageData]:
    folder = _idx_folder(root, "MNIST")
    return load_idx_split(folder, "train", MNIST_CLASSES), load_idx_split(folder, "test", MNIST_CLASSES)


def _load_fashion(root: Path) -> tuple[ImageData, ImageData]:
    folder = _idx_folder(root, "FashionMNIST")
    return load_idx_split(folder, "train", FASHION_CLASSES), load_idx_split(folder, "test", FASHION_CLASSES)


def _cifar10_jpeg_folder(root: Path) -> Path | None:
    """The JPEG copy as a folder `cifar10-jpeg/{train,test}/<class>/`, extracting the
    `cifar10-jpeg.tar.gz` archive into the cache when only the archive is present."""
    for folder in (root / "cifar10-jpeg", root / "cifar10-jpeg" / "cifar10-jpeg"):
        if (folder / "train").is_dir():
            return folder
    archive = root / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        return None
    st = archive.stat()
    target = cache_dir() / f"cifar10-jpeg-{st.st_size}-{st.st_mtime_ns}"
    done = target / ".complete"
    if not done.exists():
        _extract_once(archive, target)
    for folder in [target] + sorted(p for p in target.iterdir() if p.is_dir()):
        if (folder / "train").is_dir():
            return folder
    raise DataError(f"{archive} holds no train/<class>/ folders")


def _extract_once(archive: Path, target: Path) -> None:
    """Extract `archive` to `target`, safe for processes that do it at once (parallel `evaluate`
    calls on a fresh cache): each extracts into its own temporary folder and renames it into
    place complete with its `.complete` marker; a rename that finds a complete copy there already
    lost the race, harmlessly."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{archive}: cannot extract ({e}); the archive is corrupt or truncated") from e
        (tmp / ".complete").touch()
        for _ in range(3):
            try:
                os.rename(tmp, target)  # atomic; refuses a non-empty target
                return
            except OSError:
                if (target / ".complete").exists():
                    return  # another process finished first
                shutil.rmtree(target, ignore_errors=True)  # an incomplete copy left by a crash
        raise DataError(f"cannot move the extracted {archive.name} into {target}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_cifar10(root: Path) -> tuple[ImageData, ImageData]:
    pickles = root / "cifar-10-batches-py"
    if pickles.is_dir():
        return load_cifar10_split(pickles, "train"), load_cifar10_split(pickles, "test")
    folder = _cifar10_jpeg_folder(root)
    if folder is None:
        raise DataError(f"CIFAR-10 not found: expected {pickles}/ (python pickles) or {root}/cifar10-jpeg/ "
                        f"(train/<class>/*.jpg) or {root}/cifar10-jpeg.tar.gz; fetch the pickles with "
                        f"`oneclass download cifar10 --data-root {root}` when online")
    train, test = _load_cifar10_jpeg(folder)
    return train, test


def _load_cifar10_jpeg(folder: Path) -> tuple[ImageData, ImageData]:
    load = lambda split: load_class_folder(folder / split, 3, (32, 32), CIFAR10_CLASSES, cache_dir())
    return load("train"), load("test")


def _load_cifar10_jpeg_only(root: Path) -> tuple[ImageData, ImageData]:
    folder = _cifar10_jpeg_folder(root)
    if folder is None:
        raise DataError(f"CIFAR-10 JPEG copy not found: expected {root}/cifar10-jpeg/train/<class>/ "
                        f"or {root}/cifar10-jpeg.tar.gz")
    return _load_cifar10_jpeg(folder)


def _load_cifar100(root: Path) -> tuple[ImageData, ImageData]:
    folder = root / "cifar-100-python"
    if not folder.is_dir():
        raise DataError(f"CIFAR-100 not found: expected {folder}/ with train, test, meta; fetch it with "
                        f"`oneclass download cifar100 --data-root {root}` when online")
    return load_cifar100_split(folder, "train"), load_cifar100_split(folder, "test")


def _load_ped2(root: Path) -> tuple[Any, Any]:
    from .video import load_ped2
    return load_ped2(root)


def _load_mvtec(root: Path, channels: int | None, size: int | None) -> tuple[ImageData, ImageData]:
    from .mvtec import load_mvtec
    # without a model to read for: as the cifar10 presets take images
    size = size or 32
    return load_mvtec(root, channels=channels or 3, size=(size, size))


def _load_labelled_folder(root: Path, channels: int | None, size: int | None) -> tuple[ImageData, ImageData]:
    if channels is None:  # without a model to read for: as its images are
        channels = 3 if folder_in_colour(check_labelled_folder(root)) else 1
    return load_labelled_folder(root, channels, (size, size) if size else None, cache_dir())


def is_video(name: str) -> bool:
    """Whether dataset `name` is video (its splits are VideoData)."""
    key = name.lower().replace("_", "-")
    return key in _DATASETS and _DATASETS[key].kind == "video"


def embedded() -> tuple[ImageData, ImageData]:
    """The small MNIST subset shipped inside the package (see scripts/make_embedded.py)."""
    with np.load(EMBEDDED_FILE) as z:
        parts = {k: torch.from_numpy(z[k]) for k in z.files}
    make = lambda split: ImageData(parts[f"{split}_images"].unsqueeze(1).contiguous(),
                                   parts[f"{split}_labels"].long(), list(MNIST_CLASSES))
    return make("train"), make("test")


_DATASETS: dict[str, DatasetInfo] = {d.name: d for d in [
    DatasetInfo("mnist", "MNIST digits, IDX files in <root>/MNIST/raw/ (60k train, 10k test)", _load_mnist),
    DatasetInfo("fashion-mnist", "Fashion-MNIST, IDX files in <root>/FashionMNIST/raw/", _load_fashion),
    DatasetInfo("cifar10", "CIFAR-10: pickles in <root>/cifar-10-batches-py/, else the JPEG copy "
                           "<root>/cifar10-jpeg[.tar.gz]", _load_cifar10),
    DatasetInfo("cifar10-jpeg", "CIFAR-10 JPEG copy only (<root>/cifar10-jpeg[.tar.gz])", _load_cifar10_jpeg_only),
    DatasetInfo("cifar100", "CIFAR-100 with 20 super-classes, <root>/cifar-100-python/", _load_cifar100),
    DatasetInfo("ped2", "UCSD Ped2 video (16 training, 12 test clips): <root>/ped2/{training,testing}/frames/NN/ "
                        "with ped2.mat or UCSDped2.m, or the original <root>/UCSDped2/{Train,Test}/",
                _load_ped2, kind="video"),
    DatasetInfo("mvtec", "MVTec AD layout (industrial inspection): <root>/mvtec/<category>/{train/good,test/<defect>,"
                         "ground_truth/<defect>}/, or one category as <root>; each category a class, read as "
                         "read at the model's input (the cifar10 presets: RGB 32×32); protocol 'mvtec' gives "
                         "image and pixel AUROC", _load_mvtec, model_shaped=True),
    DatasetInfo("folder", "your own labelled images: <root>/train/<class>/ and <root>/test/<class>/ (e.g. "
                          "train/good, test/good, test/defect; a test class absent from train is always novel), "
                          "read at the model's input; the standard protocol", _load_labelled_folder,
                model_shaped=True),
    DatasetInfo("mnist-embedded", "small MNIST subset shipped with the package (500 train + "
                                  "200 test per digit); needs no data root", lambda root: embedded()),
]}


def names() -> list[str]:
    """Names of the datasets `load` knows."""
    return list(_DATASETS)


def describe() -> dict[str, str]:
    return {name: d.description for name, d in _DATASETS.items()}


def dataset_key(name: str) -> str:
    """The registered name of dataset `name` (any case, _ for -), or an error listing the known ones."""
    key = name.lower().replace("_", "-")
    if key not in _DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(names())} "
                        "(or a folder of images via load_folder / --train-dir)")
    return key


def load(name: str, data_root: str | os.PathLike | None = None, *, channels: int | None = None,
         size: int | None = None) -> tuple[ImageData, ImageData]:
    """(train, test) of dataset `name` from `data_root` (default: `default_data_root()`).
    `channels` and `size`: the model's input, at which the folder datasets (`model_shaped`:
    mvtec, folder) are decoded; the others keep their own and are conformed per model."""
    key = dataset_key(name)
    root = data_root_path(data_root)
    if _DATASETS[key].model_shaped:
        return _DATASETS[key].loader(root, channels, size)
    return _DATASETS[key].loader(root)


def model_shaped(name: str) -> bool:
    """Whether dataset `name` is decoded at the model's input (see `load`)."""
    return _DATASETS[dataset_key(name)].model_shaped


def source_of(name: str, data_root: str | os.PathLike | None) -> str:
    """Which files a dataset name resolves to (recorded with results: pickles vs JPEG copy)."""
    root = data_root_path(data_root)
    if name == "cifar10" and not (root / "cifar-10-batches-py").is_dir():
        return "CIFAR-10 (JPEG copy)"
    if name == "ped2":
        from .video import find_ped2
        layout, _ = find_ped2(root)
        return "UCSD Ped2 (JPEG frames)" if layout == "frames" else "UCSD Ped2 (original TIFF frames)"
    if name == "mvtec":
        from .mvtec import describe_source
        return describe_source(root)
    if name == "folder":
        return describe_labelled_folder(root)
    return {"cifar10": "CIFAR-10 (python pickles)", "cifar10-jpeg": "CIFAR-10 (JPEG copy)"}.get(name, name)


def folder_in_colour(path: str | os.PathLike) -> bool:
    """Whether the images a `load_folder(path)` would read are in colour (see `looks_colour`)."""
    path = Path(path)
    return looks_colour(flat_folder_files(path / "train" if (path / "train").is_dir() else path))


def load_folder(path: str | os.PathLike, channels: int = 1, size: int | tuple[int, int] | None = 28
                ) -> tuple[ImageData, ImageData | None]:
    """A user's folder: `train/<class>/` (+ optional `test/<class>/`), or a flat folder of images."""
    path = Path(path)
    size_hw = (size, size) if isinstance(size, int) else size
    if (path / "train").is_dir():
        train = load_class_folder(path / "train", channels, size_hw)
        test = (load_class_folder(path / "test", channels, size_hw, train.classes)
                if (path / "test").is_dir() else None)
        return train, test
    return load_flat_folder(path, channels, size_hw), None
