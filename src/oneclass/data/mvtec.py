"""The MVTec AD folder layout, which industrial inspection data follows:

    <category>/train/good/*.png                      normal training images
    <category>/test/good/*.png                       normal test images
    <category>/test/<defect>/*.png                   defective test images
    <category>/ground_truth/<defect>/<name>_mask.png their defect masks (white = defect)

A data root holds one category (`train/` directly in it) or several (`<root>/mvtec/<category>/`
or `<root>/<category>/`). Each category is a class of the dataset: training images carry their
category's label; test images too, with a defect flag and a pixel mask each (zero for good
images; a defective image without a mask file is an error, not a silently empty mask)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .folder import hidden_under, list_images, open_image, read_images, sub_folders
from .images import ImageData


def is_category(folder: Path) -> bool:
    return (folder / "train" / "good").is_dir() and (folder / "test").is_dir()


def find_categories(root: str | Path) -> list[Path]:
    root = Path(root)
    if is_category(root):
        return [root]
    for base in (root / "mvtec", root / "mvtec_anomaly_detection", root):
        if base.is_dir():
            found = [base / name for name in sub_folders(base) if is_category(base / name)]
            if found:
                return found
    raise DataError(f"no MVTec AD layout under {root}: expected <category>/train/good/ and <category>/test/<defect>/ "
                    f"(in {root}, {root}/mvtec/ or {root} itself)")


def describe_source(root: str | Path) -> str:
    """Which folders the dataset resolved to, for a run's identity: the categories and a digest
    of every file's path (relative to its category's parent) and size, so a run on other data in
    the same layout is another run."""
    import hashlib
    categories = find_categories(root)
    h = hashlib.sha256()
    n = 0
    for c in categories:
        # hidden files (a Finder's .DS_Store) are not data: they change no run
        for f in sorted(p for p in c.rglob("*") if p.is_file() and not hidden_under(p, c)):
            h.update(f"{f.relative_to(c.parent)}|{f.stat().st_size}\n".encode())
            n += 1
    return f"MVTec AD layout: {', '.join(c.name for c in categories)} ({n} files, {h.hexdigest()[:10]})"


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask file → 0/1 uint8 H×W at `size`: a pixel is defect when most of the area it
    covers is (area resampling, then > 0.5)."""
    im = open_image(path, "L").resize((size[1], size[0]), Image.BOX)
    return (np.asarray(im, dtype=np.float32) > 127.5).astype(np.uint8)


def load_category_test(folder: Path, size: tuple[int, int]) -> tuple[list[Path], list[bool], list[np.ndarray]]:
    files, novel, masks = [], [], []
    for defect_dir in (folder / "test" / name for name in sub_folders(folder / "test")):
        found = list_images(defect_dir)
        for f in found:
            files.append(f)
            is_defect = defect_dir.name != "good"
            novel.append(is_defect)
            if not is_defect:
                masks.append(np.zeros(size, np.uint8))
                continue
            mask = folder / "ground_truth" / defect_dir.name / f"{f.stem}_mask.png"
            if not mask.is_file():
                raise DataError(f"{f}: no defect mask {mask} (the MVTec AD layout has one per defective image)")
            masks.append(read_mask(mask, size))
    if not files:
        raise DataError(f"no test images in {folder / 'test'}/<good|defect>/")
    if not any(novel):
        raise DataError(f"{folder / 'test'} has only good images: a test set needs defects too")
    return files, novel, masks


def load_mvtec(root: str | Path, channels: int = 3, size: tuple[int, int] = (32, 32)
               ) -> tuple[ImageData, ImageData]:
    """(train, test) of every category under `root`, resized to `size`; test images carry
    `novel` (defect) flags and `masks`."""
    categories = find_categories(root)
    names = [c.name for c in categories]
    train_files, train_labels, test_files, test_labels, novel, masks = [], [], [], [], [], []
    for label, folder in enumerate(categories):
        good = list_images(folder / "train" / "good")
        if not good:
            raise DataError(f"no training images in {folder / 'train' / 'good'}")
        train_files += good
        train_labels += [label] * len(good)
        files, flags, category_masks = load_category_test(folder, size)
        test_files += files
        test_labels += [label] * len(files)
        novel += flags
        masks += category_masks
    train = ImageData(read_images(train_files, channels, size), torch.tensor(train_labels, dtype=torch.long),
                      names, [str(f) for f in train_files])
    test = ImageData(read_images(test_files, channels, size), torch.tensor(test_labels, dtype=torch.long),
                     names, [str(f) for f in test_files], torch.tensor(novel, dtype=torch.bool),
                     torch.from_numpy(np.stack(masks)))
    return train, test


def write_example(root: str | Path, category: str = "widget", n_train: int = 60, n_good: int = 8,
                  n_defect: int = 8, size: int = 48, seed: int = 0) -> Path:
    """Write a small folder in this layout, to try it out and to test with: good parts are a grey
    disc on a dark textured plate; the defect ('scratch') is a bright bar across the disc, with
    its mask in ground_truth/scratch/<name>_mask.png. Returns the category folder."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "mvtec" / category
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2

    def part(defect: bool) -> tuple[np.ndarray, np.ndarray]:
        img = rng.normal(40, 6, (size, size, 3))
        img[disc] = 140 + rng.normal(0, 4, (int(disc.sum()), 3))
        mask = np.zeros((size, size), bool)
        if defect:
            r = int(rng.integers(size // 3, 2 * size // 3))
            mask[r:r + 5, size // 4: 3 * size // 4] = True
            img[mask] = 250
        return img.clip(0, 255).astype(np.uint8), mask

    for split, name, n, defect in (("train", "good", n_train, False), ("test", "good", n_good, False),
                                   ("test", "scratch", n_defect, True)):
        folder = base / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask = part(defect)
            Image.fromarray(img).save(folder / f"{i:03d}.png")
            if defect:
                gt = base / "ground_truth" / name
                gt.mkdir(parents=True, exist_ok=True)
                Image.fromarray((mask * 255).astype(np.uint8)).save(gt / f"{i:03d}_mask.png")
    return base
