"""Method names → detector classes."""
from __future__ import annotations

from typing import Any

from .detector import Detector
from .errors import OneClassError
from .models.alocc import ALOCCDetector
from .models.anogan import AnoGANDetector
from .models.attn_entropy import AttnEntropyDetector
from .models.deep_svdd import DeepSVDDDetector
from .models.ganomaly import GANomalyDetector
from .models.lsa import DAEDetector, LSADetector
from .models.memae import MemAEDetector
from .models.oled import CAEDetector, OLEDDetector
from .models.pixel_cnn import PixelCNNDetector
from .models.shallow import KDEDetector, OCSVMDetector
from .models.vae import VAEDetector

_METHODS: dict[str, type[Detector]] = {cls.name: cls for cls in (
    LSADetector, DAEDetector, ALOCCDetector, OLEDDetector, CAEDetector, AttnEntropyDetector, OCSVMDetector, KDEDetector,
    VAEDetector, MemAEDetector, DeepSVDDDetector, PixelCNNDetector, AnoGANDetector, GANomalyDetector,
)}


def detector_class(name: str) -> type[Detector]:
    if name not in _METHODS:
        raise OneClassError(f"unknown method {name!r}; known methods: {', '.join(_METHODS)}")
    return _METHODS[name]


def methods() -> dict[str, str]:
    """Registered methods and their one-line descriptions."""
    return {name: cls.description for name, cls in _METHODS.items()}


def create(method: str, preset: str = "mnist", *, epochs: int | None = None, seed: int = 0,
           device: str | None = "auto", **options: Any) -> Detector:
    """A new, unfitted detector of `method` with the hyper-parameters of `preset`."""
    return detector_class(method)(preset, epochs=epochs, seed=seed, device=device, **options)


def preset_for(method: str, dataset: str) -> str:
    """The preset that matches a dataset (cifar10-jpeg → cifar10, fashion-mnist → mnist, …)."""
    cls = detector_class(method)
    key = {"cifar10-jpeg": "cifar10", "mnist-embedded": "mnist", "fashion-mnist": "mnist", "mvtec": "cifar10"}.get(dataset, dataset)
    if dataset in cls.presets:
        return dataset
    if key in cls.presets:
        return key
    from .data import dataset_key
    dataset_key(dataset)  # a misspelt dataset is named as such, not as a missing preset
    raise OneClassError(f"method {method!r} has no preset for dataset {dataset!r}; presets: {', '.join(cls.presets)}")
