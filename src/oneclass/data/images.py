"""The in-memory image container and the conversion of user inputs into it.

Images are held as a compact uint8 tensor N×C×H×W; they become float only per batch, on the
device that trains or scores (see `to_float`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..errors import DataError


@dataclass
class ImageData:
    """Images (uint8, N×C×H×W), integer labels (N,) and the class names they index."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str] = field(default_factory=list)
    paths: list[str] | None = None  # file of each image, when read from a folder
    # industrial layouts (MVTec AD): which images show a defect, and its pixel mask (N×H×W, 0/1)
    novel: torch.Tensor | None = None
    masks: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"ImageData needs a uint8 N×C×H×W tensor, got {self.images.dtype} "
                            f"with shape {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise DataError(f"{len(self.images)} images but {tuple(self.labels.shape)} labels")
        if self.paths is not None and len(self.paths) != len(self.images):
            raise DataError(f"{len(self.images)} images but {len(self.paths)} paths")
        if self.novel is not None and self.novel.shape != (len(self.images),):
            raise DataError(f"{len(self.images)} images but {tuple(self.novel.shape)} defect flags")
        if self.masks is not None and tuple(self.masks.shape) != (len(self.images), *self.images.shape[2:]):
            raise DataError(f"masks of shape {tuple(self.masks.shape)} do not match images {tuple(self.images.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray | torch.Tensor) -> "ImageData":
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        pick = lambda t: t[index] if t is not None else None  # noqa: E731
        return ImageData(self.images[index], self.labels[index], list(self.classes), paths,
                         pick(self.novel), pick(self.masks))

    def class_index(self, name_or_index: int | str) -> int:
        """The label of a class given by its index or its name."""
        if isinstance(name_or_index, str) and not name_or_index.isdigit():
            if name_or_index not in self.classes:
                raise DataError(f"unknown class {name_or_index!r}; classes are {self.classes}")
            return self.classes.index(name_or_index)
        index = int(name_or_index)
        n = len(self.classes) if self.classes else int(self.labels.max()) + 1
        if not 0 <= index < n:
            raise DataError(f"class index {index} out of range 0..{n - 1}")
        return index


def as_uint8_images(x: Any, *, name: str = "input") -> torch.Tensor:
    """Turn what a user passes (array or tensor, N×H×W or N×C×H×W or N×H×W×C, uint8 or float)
    into a uint8 N×C×H×W tensor, with a clear error for anything that cannot be an image batch.

    Floats are taken as [0, 1] when their range allows it, else as [0, 255]; values outside
    either range are an error rather than a silent clip."""
    if isinstance(x, ImageData):
        return x.images
    t = _as_tensor(x, name, "images")
    if t.ndim not in (3, 4):
        hint = ": one image needs a batch axis (x[None]) or a list ([x])" if t.ndim == 2 else ""
        raise DataError(f"{name}: expected images shaped N×H×W or N×C×H×W, got shape {tuple(t.shape)}{hint}")
    if t.shape[0] == 0:
        raise DataError(f"{name}: no images (empty batch)")
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.shape[1] not in (1, 3) and t.shape[-1] in (1, 3):
        t = t.permute(0, 3, 1, 2)  # N×H×W×C, as PIL/NumPy images come
    if t.shape[1] not in (1, 3):
        raise DataError(f"{name}: images need 1 or 3 channels, got shape {tuple(t.shape)}")
    if t.shape[2] == 0 or t.shape[3] == 0:
        raise DataError(f"{name}: images with no pixels, shape {tuple(t.shape)}")
    return _to_uint8(t, name)


def is_image_list(x: Any) -> bool:
    """Whether `x` is read image by image (`images_from_list`): a PIL image, or a list or tuple
    holding PIL images, image file paths or images of more than one shape. A list of equal arrays
    stays a batch."""
    if isinstance(x, Image.Image):
        return True
    if not isinstance(x, (list, tuple)) or not x:
        return False
    if any(isinstance(item, (Image.Image, str, os.PathLike)) for item in x):
        return True
    try:
        return len({np.shape(item) for item in x}) > 1
    except ValueError:  # an item is itself ragged: refused by the batch path with its own error
        return False


def images_from_list(items: Any, channels: int, size: int | tuple[int, int], *,
                     name: str = "input") -> torch.Tensor:
    """Images given one by one, as photos come: PIL images (any mode `convert_image` reads), image
    files (decoded as `data.folder.open_image` decodes them) and
    arrays or tensors H×W, H×W×C or C×H×W, each of its own size → one uint8 N×C×H×W batch,
    every image conformed to `channels` and `size`. Floats are read as [0, 1] only when every
    float image of the list lies in it, as for one array batch (a dark [0, 255] image is not
    stretched on its own)."""
    if isinstance(items, Image.Image):
        items = [items]
    mode = "L" if channels == 1 else "RGB"
    singles: list[torch.Tensor] = []
    for i, item in enumerate(items):
        what = f"{name}: image {i}"
        if isinstance(item, (str, os.PathLike)):  # an image file among arrays or PIL images
            from .folder import open_image  # folder.py builds on this module
            if not Path(item).is_file():
                raise DataError(f"{what}: no such file: {item}")
            item = open_image(Path(item), mode)
        if isinstance(item, Image.Image):
            arr = np.array(convert_image(item, mode, what), dtype=np.uint8)
            t = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
        else:
            t = _as_tensor(item, what, "an image")
            if t.ndim == 2:
                t = t.unsqueeze(0)
            elif t.ndim == 3 and t.shape[0] not in (1, 3) and t.shape[-1] in (1, 3):
                t = t.permute(2, 0, 1)  # H×W×C
            if t.ndim != 3 or t.shape[0] not in (1, 3):
                raise DataError(f"{what}: expected one image shaped H×W, H×W×C or C×H×W with 1 or 3 "
                                f"channels, got shape {tuple(np.shape(item))}")
            if t.shape[1] == 0 or t.shape[2] == 0:
                raise DataError(f"{what}: an image with no pixels, shape {tuple(np.shape(item))}")
        singles.append(t)
    floats = [(i, t) for i, t in enumerate(singles) if t.dtype != torch.uint8]
    hi = max((_checked_range(t[None], f"{name}: image {i}")[1] for i, t in floats), default=0.0)
    return torch.cat([conform(_to_uint8(t, f"{name}: image {i}", hi)[None], channels, size)
                      for i, t in enumerate(singles)])


def _as_tensor(x: Any, name: str, what: str) -> torch.Tensor:
    if isinstance(x, (list, tuple)):
        try:
            x = np.asarray(x)
        except ValueError as e:  # a ragged nested list
            raise DataError(f"{name}: cannot be read as {what}: {e}") from e
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biufc":  # objects, strings, dates: no pixels (bool, complex: refused later)
            kind = "an object" if x.dtype == object else f"a {x.dtype}"
            raise DataError(f"{name}: {kind} array cannot be read as {what}")
        # a read-only array (np.load's memmap, a broadcast view) is copied: torch warns on sharing
        # memory it may not write
        return torch.from_numpy(np.ascontiguousarray(x) if x.flags.writeable else np.array(x))
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    raise DataError(f"{name}: expected a numpy array, a torch tensor or ImageData, got {type(x).__name__}")


def _checked_range(t: torch.Tensor, name: str) -> tuple[float, float]:
    """The (min, max) of pixel values that must be finite and lie in [0, 255]."""
    if t.dtype == torch.bool or t.is_complex():
        raise DataError(f"{name}: unsupported dtype {t.dtype}")
    # the range is checked in the input's own precision: a float64 of −1e-276 becomes −0.0 in
    # float32 and would pass as in range
    wide = t.to(torch.float64)
    if not torch.isfinite(wide).all():
        bad = int((~torch.isfinite(wide)).flatten(1).any(1).sum())
        raise DataError(f"{name}: {bad} sample(s) contain NaN or infinite values")
    lo, hi = float(wide.min()), float(wide.max())
    if lo < 0.0 or hi > 255.0:
        raise DataError(f"{name}: pixel values must lie in [0, 1] or [0, 255], found [{lo:g}, {hi:g}]")
    return lo, hi


def _to_uint8(t: torch.Tensor, name: str, hi: float | None = None) -> torch.Tensor:
    """uint8 as is; floats read as [0, 1] when their range allows it, else as [0, 255]. A caller
    that has already checked the values passes `hi`, the maximum over the batch they belong to."""
    if t.dtype == torch.uint8:
        return t.contiguous()
    if hi is None:
        hi = _checked_range(t, name)[1]
    scale = 255.0 if hi <= 1.0 else 1.0
    return (t.to(torch.float32) * scale).round_().clamp_(0, 255).to(torch.uint8).contiguous()


def convert_image(im: Image.Image, mode: str, what: str) -> Image.Image:
    """A PIL image in mode "L" or "RGB", upright as a viewer shows it (a camera's EXIF orientation
    turned into pixels; an image already turned has no such tag left): every common mode is
    converted (1, L, P, RGB, RGBA without its alpha, CMYK, LA), 16-bit grey (I;16) is scaled to 8
    bits rather than clipped, 32-bit integer and float images are refused; `what` names the image
    in the error."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        grey = Image.fromarray((np.asarray(im, dtype=np.float64) / 257.0).round().astype(np.uint8))
        return grey if mode == "L" else grey.convert("RGB")
    if im.mode in ("I", "F"):
        raise DataError(f"{what} has 32-bit {'integer' if im.mode == 'I' else 'float'} pixels "
                        "(PIL mode " + im.mode + "); save it as 8- or 16-bit")
    return im.convert(mode)


def conform(images: torch.Tensor, channels: int, size: int | tuple[int, int]) -> torch.Tensor:
    """Bring uint8 images to the channel count and spatial size a model expects
    (grey↔RGB, bilinear resize), staying uint8."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    c = images.shape[1]
    if c != channels:
        if channels == 1:  # ITU-R 601 luma, as PIL's "L" conversion
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
        else:
            images = images.expand(-1, channels, -1, -1)
    if tuple(images.shape[-2:]) != size:
        images = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False,
                               antialias=True).round_().clamp_(0, 255).to(torch.uint8)
    return images.contiguous()


def to_float(batch: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """uint8 batch → float in the model's value range, e.g. (0, 1) or (-1, 1)."""
    lo, hi = value_range
    return batch.float().mul_((hi - lo) / 255.0).add_(lo)


def as_uint8_clips(x: Any, shape: tuple[int, int, int, int], *, name: str = "input") -> torch.Tensor:
    """Video clips (N×T×H×W grey or N×C×T×H×W; uint8, or float in [0, 1] / [0, 255]) → uint8
    N×C×T×H×W of exactly `shape` (C, T, H, W): clips are cut by the video protocol, not resized here."""
    t = _as_tensor(x, name, "clips")
    if t.ndim == 4 and shape[0] == 1:
        t = t.unsqueeze(1)
    if t.ndim != 5 or tuple(t.shape[1:]) != tuple(shape):
        raise DataError(f"{name}: expected clips shaped N×{'×'.join(map(str, shape))}, got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise DataError(f"{name}: no clips (empty batch)")
    return _to_uint8(t, name)
