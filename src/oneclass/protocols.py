"""Evaluation protocols of the four papers (see ../shared/specs/protocols.md).

Each protocol turns a dataset's (train, test) splits and a normal class into a `Split`: training
and validation images of the normal class only, a labelled test set (1 = novel), and a record
of how it was built. Everything is deterministic given the seed."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .data.images import ImageData
from .errors import DataError


@dataclass
class Split:
    train: ImageData
    val: ImageData
    test: ImageData
    test_labels: np.ndarray  # 1 = novel
    info: dict[str, Any] = field(default_factory=dict)
    # optional labelled set (1 = outlier) for picking the best epoch, drawn from training data
    # and disjoint from train/val/test (OLED and ALOCC select epochs on 150 + 150 such images)
    selection: ImageData | None = None
    selection_labels: np.ndarray | None = None


def _class_counts(data: ImageData) -> dict[str, int]:
    labels, counts = np.unique(data.labels.numpy(), return_counts=True)
    names = data.classes
    return {(names[int(k)] if int(k) < len(names) else str(int(k))): int(c) for k, c in zip(labels, counts)}


def _record(name: str, normal: int, seed: int, split: Split, **extra) -> dict[str, Any]:
    return {
        "protocol": name, "normal_class": normal,
        "normal_class_name": split.train.classes[normal] if normal < len(split.train.classes) else str(normal),
        "seed": seed,
        "counts": {"train": len(split.train), "val": len(split.val), "test": len(split.test),
                   "test_normal": int((split.test_labels == 0).sum()),
                   "test_novel": int((split.test_labels == 1).sum())},
        "class_counts": {"train": _class_counts(split.train), "val": _class_counts(split.val),
                         "test": _class_counts(split.test)},
        **extra,
    }


def _hold_out(index: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle; the last `fraction` becomes the validation part (LSA's convention)."""
    index = rng.permutation(index)
    n_val = int(round(len(index) * fraction))
    if len(index) - n_val < 2 or n_val < 1:
        raise DataError(f"only {len(index)} normal training samples: too few to hold out a validation set")
    return np.sort(index[:-n_val]), np.sort(index[-n_val:])


def _normal_index(data: ImageData, normal: int, where: str) -> np.ndarray:
    index = np.flatnonzero(data.labels.numpy() == normal)
    if len(index) == 0:
        raise DataError(f"no samples of class {normal} in the {where} split")
    return index


def _take_selection(pool: ImageData, tr: np.ndarray, others: np.ndarray, n: int,
                    seed: int) -> tuple[np.ndarray, ImageData | None, np.ndarray | None]:
    """Move n normal training images and n other-class images into a labelled selection set.
    Its own generator, so the rest of a protocol's split does not change with it."""
    if n <= 0:
        return tr, None, None
    if n > len(tr) // 2 or n > len(others):
        raise DataError(f"a selection set of {n} + {n} images needs more training data "
                        f"({len(tr)} normal, {len(others)} of the other training classes"
                        f"{': it labels outliers from them' if not len(others) else ''})")
    rng = np.random.default_rng([seed, 7919])
    chosen_in = rng.choice(tr, size=n, replace=False)
    chosen_out = rng.choice(others, size=n, replace=False)
    index = np.concatenate([np.sort(chosen_in), np.sort(chosen_out)])
    labels = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    return np.setdiff1d(tr, chosen_in), pool.subset(index), labels


def normal_hold_out(train: ImageData, normal: int, seed: int = 0,
                    val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the normal class's training and validation images (a seeded 10% held out),
    as the standard protocol splits them; `fit --dataset` trains on the same."""
    return _hold_out(_normal_index(train, normal, "training"), val_fraction, np.random.default_rng(seed))


def standard(train: ImageData, test: ImageData, normal: int, seed: int = 0,
             val_fraction: float = 0.1, selection: int = 0) -> Split:
    """Train on the normal class of the training split (minus 10% validation), test on the
    whole test split (LSA, Tian et al., OCGAN/OLED CIFAR-10)."""
    tr, va = normal_hold_out(train, normal, seed, val_fraction)
    others = np.flatnonzero(train.labels.numpy() != normal)
    tr, sel, sel_labels = _take_selection(train, tr, others, selection, seed)
    labels = (test.labels.numpy() != normal).astype(np.int64)
    if labels.min() == labels.max():  # a user's folder may lack one side; AUROC needs both
        name = train.classes[normal] if normal < len(train.classes) else str(normal)
        raise DataError(f"the test split has {'no' if labels[0] else 'only'} images of the normal class {name!r}: "
                        "a test set needs normal and novel images")
    split = Split(train.subset(tr), train.subset(va), test, labels, selection=sel, selection_labels=sel_labels)
    split.info = _record("standard", normal, seed, split, val_fraction=val_fraction,
                         **({"selection": selection} if selection else {}))
    return split


def _pooled(train: ImageData, test: ImageData) -> ImageData:
    # a user's folder names its test-only classes after the training ones (`load_labelled_folder`)
    classes = test.classes if test.classes[:len(train.classes)] == train.classes else train.classes
    return ImageData(torch.cat([train.images, test.images]), torch.cat([train.labels, test.labels]),
                     list(classes))


def memae(train: ImageData, test: ImageData, normal: int, seed: int = 0,
          anomaly_ratio: float = 0.3, val_fraction: float = 0.1, selection: int = 0) -> Split:
    """OLED's MNIST protocol (after MemAE): train and test pooled; the normal class split 2:1
    into train/test; anomalies from the other classes numbering `anomaly_ratio` × the test
    inliers (as the official OLED code counts them)."""
    rng = np.random.default_rng(seed)
    pool = _pooled(train, test)
    normal_idx = rng.permutation(_normal_index(pool, normal, "pooled"))
    n_train = int(round(len(normal_idx) * 2 / 3))
    tr_all, te_in = normal_idx[:n_train], normal_idx[n_train:]
    tr, va = _hold_out(tr_all, val_fraction, rng)
    others = np.flatnonzero(pool.labels.numpy() != normal)
    n_out = int(round(anomaly_ratio * len(te_in)))
    te_out = rng.choice(others, size=n_out, replace=False)
    te = np.concatenate([np.sort(te_in), np.sort(te_out)])
    labels = np.concatenate([np.zeros(len(te_in), np.int64), np.ones(n_out, np.int64)])
    tr, sel, sel_labels = _take_selection(pool, tr, np.setdiff1d(others, te_out), selection, seed)
    split = Split(pool.subset(tr), pool.subset(va), pool.subset(te), labels, selection=sel, selection_labels=sel_labels)
    split.info = _record("memae", normal, seed, split, anomaly_ratio=anomaly_ratio, val_fraction=val_fraction,
                         **({"selection": selection} if selection else {}))
    return split


def outlier_fraction(train: ImageData, test: ImageData, normal: int, seed: int = 0,
                     outlier_fraction: float = 0.5, val_fraction: float = 0.1, selection: int = 0) -> Split:
    """ALOCC's MNIST experiment: train on the target class; the test set is the target class's
    test images mixed with outliers from the other classes making `outlier_fraction` of it. A
    selection set (paper-style epoch choice) comes from the training split: the same for every
    fraction, so one training serves them all."""
    if not 0.0 < outlier_fraction < 1.0:
        raise DataError(f"outlier fraction must lie in (0, 1), got {outlier_fraction}")
    rng = np.random.default_rng(seed)
    tr, va = _hold_out(_normal_index(train, normal, "training"), val_fraction, rng)
    te_in = _normal_index(test, normal, "test")
    n_out = int(round(outlier_fraction / (1.0 - outlier_fraction) * len(te_in)))
    others = np.flatnonzero(test.labels.numpy() != normal)
    if n_out > len(others):
        raise DataError(f"{n_out} outliers needed but only {len(others)} other-class test samples")
    te_out = np.sort(rng.choice(others, size=n_out, replace=False))
    te = np.concatenate([te_in, te_out])
    labels = np.concatenate([np.zeros(len(te_in), np.int64), np.ones(n_out, np.int64)])
    tr, sel, sel_labels = _take_selection(train, tr, np.flatnonzero(train.labels.numpy() != normal), selection, seed)
    split = Split(train.subset(tr), train.subset(va), test.subset(te), labels, selection=sel, selection_labels=sel_labels)
    split.info = _record("outlier-fraction", normal, seed, split, outlier_fraction=outlier_fraction,
                         val_fraction=val_fraction, **({"selection": selection} if selection else {}))
    return split


def coil(train: ImageData, test: ImageData, normal: int, seed: int = 0,
         train_fraction: float = 0.8, val_fraction: float = 0.15, selection: int = 0) -> Split:
    """Tian et al.'s COIL-100 protocol, for any dataset: all images pooled; 80% of the normal
    class trains (15% of it held out for validation, as the paper), 20% tests, with as many
    anomalies drawn from the other classes. Repeat over seeds and average."""
    rng = np.random.default_rng(seed)
    pool = _pooled(train, test)
    normal_idx = rng.permutation(_normal_index(pool, normal, "pooled"))
    n_train = int(round(len(normal_idx) * train_fraction))
    tr, va = _hold_out(normal_idx[:n_train], val_fraction, rng)
    te_in = np.sort(normal_idx[n_train:])
    others = np.flatnonzero(pool.labels.numpy() != normal)
    te_out = np.sort(rng.choice(others, size=len(te_in), replace=False))
    te = np.concatenate([te_in, te_out])
    labels = np.concatenate([np.zeros(len(te_in), np.int64), np.ones(len(te_out), np.int64)])
    tr, sel, sel_labels = _take_selection(pool, tr, np.setdiff1d(others, te_out), selection, seed)
    split = Split(pool.subset(tr), pool.subset(va), pool.subset(te), labels, selection=sel, selection_labels=sel_labels)
    split.info = _record("coil", normal, seed, split, train_fraction=train_fraction, val_fraction=val_fraction,
                         **({"selection": selection} if selection else {}))
    return split


def mvtec(train: ImageData, test: ImageData, normal: int, seed: int = 0, val_fraction: float = 0.1) -> Split:
    """The MVTec AD protocol: train on a category's good training images (minus 10%
    validation), test on that category's test images, novel = defective (with pixel masks)."""
    if test.novel is None:
        raise DataError("protocol 'mvtec' needs a test split with defect flags (the MVTec AD layout: "
                        "dataset 'mvtec')")
    rng = np.random.default_rng(seed)
    tr, va = _hold_out(_normal_index(train, normal, "training"), val_fraction, rng)
    te = _normal_index(test, normal, "test")
    labels = test.novel.numpy()[te].astype(np.int64)
    split = Split(train.subset(tr), train.subset(va), test.subset(te), labels)
    split.info = _record("mvtec", normal, seed, split, val_fraction=val_fraction,
                         masks=test.masks is not None)
    return split


PROTOCOLS: dict[str, Callable[..., Split]] = {
    "standard": standard, "memae": memae, "outlier-fraction": outlier_fraction, "coil": coil, "mvtec": mvtec,
}


def make(name: str, train: ImageData, test: ImageData, normal: int, seed: int = 0, **options) -> Split:
    if name not in PROTOCOLS:
        raise DataError(f"unknown protocol {name!r}; known protocols: {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[name]
    takes = [p for p in inspect.signature(protocol).parameters if p not in ("train", "test", "normal", "seed")]
    unknown = sorted(set(options) - set(takes))
    if "selection" in unknown:  # an epoch chosen on labelled outliers (select='val_auroc')
        raise DataError(f"protocol {name!r} has no labelled selection set, so select='val_auroc' cannot choose "
                        "an epoch there: its training split has no outliers to label")
    if unknown:
        raise DataError(f"protocol {name!r} takes no option {', '.join(unknown)}; it takes {', '.join(takes)}")
    return protocol(train, test, normal, seed, **options)
