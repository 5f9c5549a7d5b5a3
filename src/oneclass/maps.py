"""Anomaly-map pictures: an image beside its map laid over it, on one colour scale per run.

`oneclass score --maps DIR` writes one `<name>_map.png` per scored image; the maps come from
`Detector.score_maps` (see `neural.NeuralDetector.score_maps`)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from .fileio import atomic_open


def colour_scale(maps: np.ndarray) -> tuple[float, float]:
    """One scale for every map of a run (so a brighter map means a more novel image, not a
    rescaled one): the 1st to 99.5th percentile of all their pixels."""
    lo, hi = np.percentile(maps, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1e-12)


def heat_colours(maps: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Maps (…×H×W) as RGB uint8 (…×H×W×3) in matplotlib's inferno, on the run's one `scale`."""
    from matplotlib import colormaps
    lo, hi = scale
    return (colormaps["inferno"](np.clip((maps - lo) / (hi - lo), 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def overlay_png(image: np.ndarray, amap: np.ndarray, scale: tuple[float, float], alpha: float = 0.55,
                min_side: int = 160) -> bytes:
    """PNG bytes: the image (C×H×W uint8, grey or RGB) on the left, the image with the map
    (H×W, coloured by `scale`) blended over it on the right, enlarged to at least `min_side`."""
    grey_or_rgb = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    base = Image.fromarray(grey_or_rgb).convert("RGB")
    h, w = amap.shape
    factor = max(1, int(np.ceil(min_side / min(h, w))))
    size = (w * factor, h * factor)
    base = base.resize(size, Image.NEAREST)
    heat_img = Image.fromarray(heat_colours(amap, scale)).resize(size, Image.BILINEAR)
    blended = Image.blend(base, heat_img, alpha)
    canvas = Image.new("RGB", (2 * size[0] + 4, size[1]), (255, 255, 255))
    canvas.paste(base, (0, 0))
    canvas.paste(blended, (size[0] + 4, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def write_overlays(out_dir: Path, names: Iterable[Path], images: np.ndarray, maps: np.ndarray) -> int:
    """One `<name>_map.png` per image under `out_dir` (names relative, sub-folders kept)."""
    scale = colour_scale(maps)
    count = 0
    for name, image, amap in zip(names, images, maps):
        target = out_dir / name.parent / f"{name.stem}_map.png"
        with atomic_open(target) as fh:
            fh.write(overlay_png(image, amap, scale))
        count += 1
    return count


def examples_png(det, images, examples: dict[str, list[dict]]) -> bytes:
    """A run's most and least novel test images (`examples`: group → [{index, score, novel}])
    as one PNG: a row of images per group, each titled with its score and true label, with its
    anomaly map (one colour scale) beneath when the method gives maps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    extremes = {k: np.array([e["index"] for e in v], dtype=np.int64) for k, v in examples.items()}
    index = np.concatenate(list(extremes.values()))
    scores = {e["index"]: e["score"] for v in examples.values() for e in v}
    labels = {e["index"]: e["novel"] for v in examples.values() for e in v}
    chosen = images[torch_index(index)]
    pictures = np.asarray(det.prepare(chosen))
    h, w = pictures.shape[-2:]
    tiles = [np.repeat(p, 3, axis=0) if p.shape[0] == 1 else p[:3] for p in pictures]  # 3×H×W uint8
    maps = None
    if getattr(det, "map_headline", None) is not None and not det.config.get("video"):
        maps = det.score_maps(chosen)[det.map_headline]
        heat = [np.asarray(Image.fromarray(m).resize((w, h), Image.NEAREST))
                for m in heat_colours(maps, colour_scale(maps))]
    # one picture of all tiles in one axes: two dozen small axes took a second a run to lay out
    per_group = len(next(iter(extremes.values())))
    rows_per_group = 2 if maps is not None else 1
    rows = len(extremes) * rows_per_group
    gap_x, gap_y = max(2, w // 8), max(4, h // 3)  # white between tiles, room above each for its title
    canvas = np.full((rows * (h + gap_y), per_group * (w + gap_x), 3), 255, np.uint8)
    fig = plt.figure(figsize=(1.6 * per_group, 1.75 * rows))
    ax = fig.add_axes((0.04, 0.0, 0.96, 0.93))
    for g, name in enumerate(extremes):
        for j in range(per_group):
            k = g * per_group + j
            top, left = g * rows_per_group * (h + gap_y) + gap_y, j * (w + gap_x)
            canvas[top:top + h, left:left + w] = np.moveaxis(tiles[k], 0, -1)
            if maps is not None:
                canvas[top + h + gap_y:top + 2 * h + gap_y, left:left + w] = heat[k]
            i = index[k]
            ax.text(left + w / 2, top - 0.5, f"{scores[i]:.3g} {'novel' if labels[i] else 'normal'}", fontsize=7,
                    ha="center", va="bottom", color="tab:red" if labels[i] else "tab:green")
        middle = g * rows_per_group * (h + gap_y) + gap_y + (rows_per_group * (h + gap_y) - gap_y) / 2
        ax.text(-gap_x, middle, name, fontsize=8, rotation=90, ha="right", va="center")
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(f"{det.name}: {det.headline} score" + (f", {det.map_headline} map" if maps is not None else ""),
                 fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=70)
    plt.close(fig)
    return buf.getvalue()


def torch_index(index: np.ndarray):
    import torch
    return torch.as_tensor(np.asarray(index), dtype=torch.long)
