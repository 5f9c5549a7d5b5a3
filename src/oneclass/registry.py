"""Method names → detector classes: the built-in methods, those `register`ed in this process, and
those other installed packages declare under the entry-point group `oneclass.methods`."""
from __future__ import annotations

import re
import warnings
from importlib.metadata import entry_points
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


_BUILT_IN = frozenset(_METHODS)
PLUGIN_GROUP = "oneclass.methods"
_plugins_loaded = False
# a method's name becomes part of run folders (`name__dataset__protocol__…`) and CLI arguments
_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def register(cls: type[Detector]) -> type[Detector]:
    """Add a method of your own, a `Detector` (or `NeuralDetector`) subclass, so that `create`,
    `load`, `evaluate` and the CLI know it by `cls.name`; usable as a class decorator. The class
    is checked here, so a mistake is named now rather than at its first fit."""
    if not isinstance(cls, type) or not issubclass(cls, Detector):
        raise OneClassError(f"register() takes a Detector subclass, got {cls!r}")
    where = f"{cls.__module__}.{cls.__qualname__}"
    name = cls.__dict__.get("name")  # its own name, not one inherited from the method it extends
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise OneClassError(f"{where}: set name to lowercase letters, digits and single hyphens (e.g. 'my-ae'), "
                            f"got {name!r}")
    taken = _METHODS.get(name)
    if taken is not None and taken is not cls:
        owner = "a built-in method" if name in _BUILT_IN else f"{taken.__module__}.{taken.__qualname__}"
        raise OneClassError(f"{where}: method name {name!r} is taken by {owner}")
    if not cls.presets:
        raise OneClassError(f"{where}: no presets; give at least one, e.g. presets = {{'mnist': {{'channels': 1, "
                            "'size': 28}}")
    for preset, values in cls.presets.items():
        missing = [k for k in ("channels", "size") if k not in {**cls.defaults, **values}]
        if missing:
            raise OneClassError(f"{where}: preset {preset!r} does not set {' and '.join(missing)} "
                                "(the images it takes)")
    if not cls.components or cls.headline not in cls.components:
        raise OneClassError(f"{where}: headline {cls.headline!r} must be one of its components {cls.components!r}")
    _METHODS[name] = cls
    return cls


def _load_plugins() -> None:
    """Register the methods other installed packages declare (entry-point group
    `oneclass.methods`), once; a plugin that fails to load is named in a warning and left out."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            register(ep.load())
        except Exception as e:  # another package's fault must not take the built-in methods down
            warnings.warn(f"oneclass plugin {ep.name!r} ({ep.value}) left out: {type(e).__name__}: {e}", stacklevel=2)


def detector_class(name: str) -> type[Detector]:
    _load_plugins()
    if name not in _METHODS:
        raise OneClassError(f"unknown method {name!r}; known methods: {', '.join(_METHODS)}")
    return _METHODS[name]


def methods() -> dict[str, str]:
    """Registered methods and their one-line descriptions."""
    _load_plugins()
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
