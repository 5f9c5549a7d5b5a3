import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

import oneclass

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def pytest_configure(config):
    # `make test` runs the suite in one pytest-xdist worker per core: each worker then computes on
    # its share of the cores, not on all of them at once (2 workers × 2 threads on 2 cores thrash)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // workers))


@pytest.fixture(scope="session")
def embedded_data():
    return oneclass.datasets.embedded()


@pytest.fixture(scope="session")
def embedded_split(embedded_data):
    train, test = embedded_data
    return oneclass.protocols.standard(train, test, 0, seed=0)


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The real benchmark data: $ONECLASS_DATA (set by .ci/run), else ../shared/datasets."""
    root = Path(os.environ.get("ONECLASS_DATA") or SHARED)
    if not (root / "MNIST").is_dir():
        pytest.skip(f"real datasets not found at {root}")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # decoded folders and extracted archives go to a per-session cache, not ~/.cache
    monkeypatch.setenv("ONECLASS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def synthetic_frames(n: int, seed: int, abnormal: range | None = None, size=(48, 64)):
    """Grey frames of a small bright square walking left to right on noise; in `abnormal` frames a
    second, larger and faster square (the 'cyclist') appears. Returns frames and pixel masks."""
    import numpy as np
    rng = np.random.default_rng(seed)
    h, w = size
    frames = (rng.normal(90, 6, (n, h, w))).clip(0, 255)
    masks = np.zeros((n, h, w), bool)
    for t in range(n):
        x = (3 * t + 7 * seed) % (w - 6)
        frames[t, 20:26, x:x + 6] = 200
        if abnormal is not None and t in abnormal:
            y2, x2 = 8, (9 * t) % (w - 12)
            frames[t, y2:y2 + 12, x2:x2 + 12] = 250
            masks[t, y2:y2 + 12, x2:x2 + 12] = True
    return frames.astype("uint8"), masks


def write_ped2(root, layout: str = "original", n_train: int = 2, n_test: int = 2, frames: int = 24,
               size=(48, 64)):
    """A tiny UCSD Ped2 look-alike in either layout: `original` (Train/Train001/001.tif,
    Test/Test001_gt/001.bmp, UCSDped2.m) or `frames` (training/frames/01/000.jpg, testing/pixel_masks,
    ped2.mat). Test clip k is abnormal from frame 8 + k (counted from 1 in the ground truth)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image
    root = Path(root)
    gt_lines = ["TestVideoFile = {};"]
    ranges = []
    for split, count in (("train", n_train), ("test", n_test)):
        for k in range(1, count + 1):
            abnormal = range(7 + k, frames) if split == "test" else None
            f, m = synthetic_frames(frames, seed=k + (50 if split == "test" else 0), abnormal=abnormal, size=size)
            if layout == "original":
                folder = root / "UCSDped2" / ("Train" if split == "train" else "Test") / \
                    f"{'Train' if split == 'train' else 'Test'}{k:03d}"
                names = [f"{i + 1:03d}.tif" for i in range(frames)]
            else:
                folder = root / "ped2" / ("training" if split == "train" else "testing") / "frames" / f"{k:02d}"
                names = [f"{i:03d}.jpg" for i in range(frames)]
            folder.mkdir(parents=True)
            for name, img in zip(names, f):
                Image.fromarray(img).save(folder / name, quality=95) if name.endswith(".jpg") else \
                    Image.fromarray(img).save(folder / name)
            if split == "test":
                ranges.append((8 + k, frames))
                gt_lines.append(f"TestVideoFile{{end+1}}.gt_frame = [{8 + k}:{frames}];")
                if layout == "original":
                    gt_dir = folder.with_name(folder.name + "_gt")
                    gt_dir.mkdir()
                    for i, mask in enumerate(m):
                        Image.fromarray((mask * 255).astype("uint8")).save(gt_dir / f"{i + 1:03d}.bmp")
                else:
                    gt_dir = root / "ped2" / "testing" / "pixel_masks" / f"{k:02d}"
                    gt_dir.mkdir(parents=True)
                    for i, mask in enumerate(m):
                        Image.fromarray(mask).save(gt_dir / f"{i:03d}.png")
    if layout == "original":
        (root / "UCSDped2" / "UCSDped2.m").write_text("\n".join(gt_lines) + "\n")
    else:
        from scipy.io import savemat
        gt = np.empty((1, len(ranges)), dtype=object)
        for i, (a, b) in enumerate(ranges):
            gt[0, i] = np.array([[a], [b]], dtype=np.uint8)
        savemat(str(root / "ped2" / "ped2.mat"), {"gt": gt})
    return root


# methods with a per-pixel anomaly map, each fitted briefly on one embedded digit (shared by the
# map and export tests: what they check is arithmetic, not detection quality)
MAPPED_METHODS = ("dae", "lsa", "alocc", "oled", "cae", "attn-entropy", "vae", "memae", "pixel-cnn", "ganomaly",
                  "anogan")
EXPORTED_METHODS = tuple(m for m in MAPPED_METHODS if m != "anogan") + ("deep-svdd",)  # AnoGAN's score is a search


class _LazyFits(dict):
    """Fits a method the first time a test asks for it (a test that needs one method does not
    wait for all of them), then keeps it for the session."""

    def __init__(self, digit):
        super().__init__()
        self.digit = digit

    def __missing__(self, method):
        import torch
        # LSA at its preset's lr 1e-4 learns nothing in one epoch: every code's surprisal is then
        # 64·ln 100 within 0.3 nats, a normalisation span that float32 rounding would dominate
        extra = {"pretrain_epochs": 1} if method == "deep-svdd" else {"lr": 1e-3, "epochs": 2} if method == "lsa" \
            else {"elbo_samples": 2} if method == "vae" else {"search_steps": 3} if method == "anogan" else {}
        torch.manual_seed(0)
        det = oneclass.create(method, "mnist", seed=0, device="cpu", batch_size=32, **{"epochs": 1, **extra})
        det.fit(self.digit, progress=False)
        self[method] = det
        return det


@pytest.fixture(scope="session")
def tiny_fitted(embedded_data):
    train, _ = embedded_data
    return _LazyFits(train.images[train.labels == 3][:160])


def script_module(relative: str, name: str) -> ModuleType:
    """A script of the repository (scripts/…, not part of the package) loaded as a module."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
