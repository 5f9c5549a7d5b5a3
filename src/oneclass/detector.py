"""The detector API every method implements (scikit-learn / PyOD habit; higher score = more novel).

    det = oneclass.create("dae", preset="mnist", epochs=20, seed=0, device="auto")
    det.fit(x_train)                 # normal samples only; 10% held out for normalisation
    det.score_samples(x)             # numpy (N,)
    det.score_components(x)          # {"rec": ..., ...}
    det.set_threshold(x_val, quantile=0.95); det.predict(x)
    det.save("model.oneclass"); oneclass.load("model.oneclass")
"""
from __future__ import annotations

import copy
import io
import json
import numbers
import os
import platform
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from . import __version__
from .data.folder import image_paths, read_images
from .data.images import as_uint8_images, conform, images_from_list, is_image_list
from .errors import DataError, ModelFileError, NotFittedError, OneClassError
from .fileio import _json_default, archive_damage, atomic_open, check_output_file

MODEL_FORMAT = "oneclass-model"
MODEL_FORMAT_VERSION = 1


def parse_device(device: str | torch.device) -> torch.device:
    """The device a name means, or a one-line error for a misspelt one ("cpuu")."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise OneClassError(f"unknown device {device!r}; use cpu, cuda or auto") from e
    if dev.type not in ("cpu", "cuda"):  # the code is built and tested for these two only
        raise OneClassError(f"device {device!r}: oneclass runs on cpu or cuda (cuda:N for the N-th GPU), or auto")
    return dev


def check_seed(seed: Any) -> int:
    """`seed` as an int, or a one-line error: numpy's generators take no negative seed, and int()
    would cut 1.5 to 1 unsaid."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise OneClassError(f"seed={seed!r}: give a whole number ≥ 0")
    return int(seed)


def threshold_rule(quantile: float | None = None, contamination: float | None = None) -> dict[str, float]:
    """`{"quantile": q}` or `{"contamination": c}`: exactly one, in [0, 1]; contamination c flags
    the top fraction c, the same threshold as quantile 1 − c."""
    if (quantile is None) == (contamination is None):
        raise OneClassError("give exactly one of quantile= or contamination=")
    name, v = ("quantile", quantile) if quantile is not None else ("contamination", contamination)
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 <= v <= 1.0:
        raise OneClassError(f"{name}={v!r}: give a number in [0, 1]")
    return {name: float(v)}


# the quantile of held-out normal scores at which `fit` sets the threshold; `oneclass fit --quantile`
# defaults to the same value (the CLI parses its options without importing torch)
DEFAULT_THRESHOLD_QUANTILE = 0.95


def footage_path_error(name: str) -> DataError:
    """A video model given a path in the estimator API, which takes arrays of its samples."""
    return DataError(f"{name}: a video model reads footage through oneclass.video: fit_video(det, "
                     "oneclass.data.video.list_footage(path)) and score_footage(det, path)")


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = parse_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OneClassError("device 'cuda' asked for, but no CUDA device is available; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise OneClassError(f"device {str(dev)!r} asked for, but this machine has {torch.cuda.device_count()} CUDA "
                            f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


# what a numeric option may be, beyond its default's type: > 0, or a fraction
POSITIVE_OPTIONS = {"lr", "batch_size", "epochs", "score_batch_size", "code", "code_length",
                    "bins", "channels", "frames", "size", "patch", "patch_stride", "window", "train_stride",
                    "test_stride", "max_train_samples", "patience", "r_steps", "mm_every_epochs", "square", "ratio",
                    "resize", "r_widths", "r_dec_widths", "d_widths", "bandwidths", "rep_dim", "widths",
                    "elbo_samples", "filters", "layers", "first_kernel", "kernel", "width",
                    "search_lr"}
# pca_variance is a share below 1: scikit-learn reads 1 as one component and refuses 1.0 (for every
# component, pca_components gives the count)
FRACTION_OPTIONS = {"keep": "(0, 1]", "nu": "(0, 1]", "pca_variance": "(0, 1)", "score_lambda": "[0, 1]",
                    "betas": "[0, 1)"}


def check_option(method: str, key: str, value: Any, default: Any, declared: str | None = None) -> None:
    """Refuse an option value of the wrong type or range, naming the option, the value and what
    is allowed (`--option lr=fast` once ended in a TypeError deep inside the optimiser)."""
    def fail(allowed: str) -> None:
        raise OneClassError(f"option {key}={value!r} of method {method!r}: {allowed}")

    def number(v: Any, integer: bool) -> bool:
        # numpy scalars count (a sweep over np.linspace gives np.float32 / np.int64); booleans do not
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral if integer else numbers.Real):
            return False
        return bool(np.isfinite(v))

    kind = declared or ("bool" if isinstance(default, bool) else "int" if isinstance(default, int)
                        else "float" if isinstance(default, float) else "str" if isinstance(default, str)
                        else "list" if isinstance(default, (list, tuple)) else "any")
    optional = kind.endswith("|None")
    kind = kind.removesuffix("|None")
    if value is None and optional:
        return
    if kind == "bool" and not isinstance(value, bool):
        fail("must be true or false")
    if kind in ("int", "float") and not number(value, kind == "int"):
        fail(f"must be {'a whole number' if kind == 'int' else 'a finite number'}"
             + (" or null" if optional else ""))
    if kind == "str|float" and not (isinstance(value, str) or number(value, False)):
        fail("must be a name or a number")
    if kind == "str" and not isinstance(value, str):
        fail("must be a name (text)")
    if kind == "list":
        if not isinstance(value, (list, tuple)) or not all(number(v, False) for v in value):
            fail(f"must be a list of numbers like {json.dumps(default, default=_json_default)}")
        if isinstance(default, (list, tuple)) and key not in ("bandwidths", "r_widths", "r_dec_widths", "d_widths") \
                and len(value) != len(default):
            fail(f"must have {len(default)} values like {json.dumps(default, default=_json_default)}")
    values = value if isinstance(value, (list, tuple)) else [value]
    numeric = [v for v in values if number(v, False)]
    if key in POSITIVE_OPTIONS and any(v <= 0 for v in numeric):
        fail("must be greater than 0")
    if key in FRACTION_OPTIONS:
        span = FRACTION_OPTIONS[key]
        lo_open, hi_open = span[0] == "(", span[-1] == ")"
        if any((v <= 0 if lo_open else v < 0) or (v >= 1 if hi_open else v > 1) for v in numeric):
            fail(f"must lie in {span}")
    elif key not in ("value_range",) and any(v < 0 for v in numeric):
        fail("must not be negative")


def cpu_name() -> str:
    """The host CPU's model, e.g. "AMD EPYC 7B13": the same VM type comes on CPUs whose speed and
    float rounding differ, so run records and benchmarks name it beside the device."""
    try:  # Linux names the model here; platform.processor() is often empty
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    import sklearn
    return {"oneclass": __version__, "torch": str(torch.__version__), "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def canonical_option(value: Any, default: Any, declared: str | None = None) -> Any:
    """An option's value in its own type: a whole number given for a real-valued option (`w_inf=1`
    where the default is 1.0) is that float, so one setting has one run identity, and one cache
    entry, however it was written."""
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return value
    kind = (declared or "").removesuffix("|None")
    real = kind in ("float", "str|float") or (not kind and isinstance(default, float))
    if real and isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)) and default \
            and all(isinstance(d, float) for d in default):
        return [float(v) if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) else v for v in value]
    return value


class Detector:
    """Base class: configuration from presets, input conversion, thresholding, save/load.

    Subclasses set `name`, `description`, `defaults`, `presets`, `components`, `headline`, and
    implement `_fit(train, val)`, `_score(images) -> {component: np.ndarray}`, and
    `_get_state()` / `_set_state(state)` for what `save` must keep beyond the config."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}  # options that take one of a fixed set of values
    components: ClassVar[tuple[str, ...]] = ()
    headline: ClassVar[str] = ""
    # options whose default does not show their type (None, or a string that may also be a number)
    option_types: ClassVar[dict[str, str]] = {}
    # options added after runs of the method were recorded, each with the value that does what the
    # method did before: at that value an option is no part of a run's identity, so those runs keep
    # their keys (and their checkpoints resume); any other value names new runs
    added_later: ClassVar[dict[str, Any]] = {}
    # score_components of the validation samples, which fit scores (neural detectors for their
    # normalisers, every image detector for its threshold); not saved with the model
    validation_scores: dict[str, np.ndarray] | None = None

    def __init__(self, preset: str = "mnist", *, epochs: int | None = None, seed: int = 0,
                 device: str | None = "auto", **overrides: Any) -> None:
        if preset not in self.presets:
            raise OneClassError(f"method {self.name!r} has no preset {preset!r}; presets: {', '.join(self.presets)}")
        config = copy.deepcopy({**self.defaults, **self.presets[preset]})
        unknown = sorted(set(overrides) - set(config))
        if unknown:
            raise OneClassError(f"unknown option(s) {unknown} for method {self.name!r}; options: {sorted(config)}")
        for key, value in overrides.items():
            check_option(self.name, key, value, config[key], self.option_types.get(key))
            config[key] = canonical_option(value, config[key], self.option_types.get(key))
        # plain JSON types (tuples become lists), so a loaded model's config equals the fitted one's
        config = json.loads(json.dumps(config, default=_json_default))
        for key, allowed in self.choices.items():
            if config[key] not in allowed:
                raise OneClassError(f"option {key}={config[key]!r} of method {self.name!r} must be one of "
                                    f"{', '.join(map(repr, allowed))}")
        if epochs is not None:
            if "epochs" not in config:
                raise OneClassError(f"method {self.name!r} does not train in epochs")
            check_option(self.name, "epochs", epochs, config["epochs"])
            config["epochs"] = int(epochs)
        self.preset = preset
        self.config: dict[str, Any] = config
        self.check_config()
        self.seed = check_seed(seed)
        self.device_name = "auto" if device is None else str(device)
        if self.device_name != "auto":  # a misspelt name fails here; whether CUDA is present, at use
            parse_device(self.device_name)
        self.threshold: float | None = None
        self.threshold_rule: dict[str, Any] | None = None
        self.fitted = False
        self.fit_info: dict[str, Any] = {}
        # the arguments as given, for get_params (scikit-learn's clone checks them by identity)
        self._params: dict[str, Any] = {"preset": preset, "epochs": epochs, "seed": seed, "device": device,
                                        **overrides}

    def check_config(self) -> None:
        """Refuse, at creation, option combinations a method cannot train with (a method
        overrides this); an accepted configuration must fit and score."""

    # ---- scikit-learn's estimator protocol ----------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments (preset, epochs, seed, device and the options given), so
        that `sklearn.base.clone(det)` makes an unfitted detector with the same settings."""
        return dict(self._params)

    def set_params(self, **params: Any) -> "Detector":
        """Change constructor arguments of an unfitted detector (checked as at creation)."""
        if self.fitted:
            # its weights were trained under the old settings: changing them would drop the model
            raise OneClassError(f"set_params on a fitted {self.name} detector would discard its model; "
                                "change a copy instead: sklearn.base.clone(det).set_params(...)")
        fresh = type(self)(**{**self._params, **params})  # a bad value fails here, changing nothing
        self.__dict__.clear()  # nothing of an earlier, failed fit stays behind
        self.__dict__.update(fresh.__dict__)
        return self

    # ---- input convention -------------------------------------------------------------
    @property
    def channels(self) -> int:
        return int(self.config["channels"])

    @property
    def image_size(self) -> int:
        return int(self.config["size"])

    @property
    def device(self) -> torch.device:
        return resolve_device(self.device_name)

    def prepare(self, x: Any, name: str = "input") -> torch.Tensor:
        """Any accepted image input → uint8 N×C×H×W in this detector's channels and size."""
        files = image_paths(x, name)
        if files is not None:  # decoded as `oneclass score` decodes files: the same pixels
            if self.config.get("video"):
                raise footage_path_error(name)
            return read_images(files, self.channels, (self.image_size, self.image_size))
        if is_image_list(x):  # PIL images, or images of differing sizes
            return images_from_list(x, self.channels, self.image_size, name=name)
        images = as_uint8_images(x, name=name)
        return conform(images, self.channels, self.image_size)

    # ---- estimator API ------------------------------------------------------------------
    def fit(self, x: Any, x_val: Any = None, **train_options: Any) -> "Detector":
        """Fit on normal samples. Without `x_val`, a seeded 10% of `x` is held out for the
        validation loss and score normalisation. An image detector's threshold for `predict` is
        then the 0.95 quantile of the held-out images' scores (`set_threshold` moves it)."""
        train = self.prepare(x, "training data")
        if x_val is None:
            if len(train) < 10:
                raise DataError(f"only {len(train)} training sample{'' if len(train) == 1 else 's'}: need at least 10 "
                                "(or pass x_val explicitly)")
            perm = torch.from_numpy(np.random.default_rng(self.seed).permutation(len(train)))
            n_val = max(1, int(round(0.1 * len(train))))
            train, val = train[perm[:-n_val]], train[perm[-n_val:]]
        else:
            val = self.prepare(x_val, "validation data")
        if len(train) < 2:
            raise DataError(f"only {len(train)} training sample(s): need at least 2")
        # a refit starts afresh: a threshold set on the old model's scores does not carry over
        # (predict would use it silently), and a refit cut short leaves no model that looks fitted
        self.fitted, self.threshold, self.threshold_rule = False, None, None
        self.validation_scores = None
        self._fit(train, val, **train_options)
        self.fitted = True
        if self.validation_scores is None:  # neural detectors scored them already, for their normalisers
            self.validation_scores = self.score_components(val)
        if not self.config.get("video"):  # a video model's threshold is on frame scores (video.fit_video)
            # predict works after fit, as scikit-learn's and PyOD's detectors do: the threshold
            # `oneclass fit` sets, on normal images the training did not see
            held_out = "validation" if x_val is not None else "held-out training"
            self.threshold_from_scores(self.validation_scores[self.headline],
                                       {**threshold_rule(DEFAULT_THRESHOLD_QUANTILE),
                                        "of": f"{len(val)} {held_out} images"})
        return self

    def score_components(self, x: Any) -> dict[str, np.ndarray]:
        self._check_fitted()
        out = self._score(self.prepare(x))
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}

    def score_samples(self, x: Any) -> np.ndarray:
        return self.score_components(x)[self.headline]

    def score_maps(self, x: Any) -> dict[str, np.ndarray]:
        """Per-pixel anomaly maps {name: N×H×W}, headline map first (neural methods)."""
        raise OneClassError(f"method {self.name!r} gives no per-pixel anomaly map: it scores whole images")

    def set_threshold(self, x: Any = None, quantile: float | None = None, contamination: float | None = None,
                      *, value: float | None = None) -> float:
        """Threshold on `score_samples` from reference data: its `quantile` (e.g. 0.95: 5% of
        normal reference samples flagged), or, for data with a known fraction of anomalies,
        `contamination` (the top fraction is flagged); or a `value` in score units (read off a
        histogram of scores), with no data."""
        if value is not None:
            if x is not None or quantile is not None or contamination is not None:
                raise OneClassError("value= sets the threshold itself: give no data, quantile= or contamination= with it")
            self._check_fitted()  # a value is in the units of a fitted model's scores
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise OneClassError(f"threshold value={value!r}: give a finite number in score units")
            self.threshold, self.threshold_rule = float(value), {"value": float(value)}
            return self.threshold
        rule = threshold_rule(quantile, contamination)  # checked before any scoring
        if x is None:
            raise OneClassError("set_threshold needs reference data x (or value=)")
        return self.threshold_from_scores(self.score_samples(x), rule)

    def threshold_from_scores(self, scores: np.ndarray, rule: dict[str, Any]) -> float:
        """Set the threshold from reference scores (already scored, e.g. the frames of a video
        model) by a rule of `threshold_rule`; extra keys of `rule` say what the scores were of."""
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if not len(scores):
            raise DataError("no reference scores to set a threshold from")
        q = rule["quantile"] if "quantile" in rule else 1.0 - rule["contamination"]
        self.threshold, self.threshold_rule = float(np.quantile(scores, q)), dict(rule)
        return self.threshold

    def predict(self, x: Any) -> np.ndarray:
        """1 = novel (score above the threshold), 0 = normal."""
        if self.threshold is None:
            raise NotFittedError("no threshold: call set_threshold(x_val, quantile=...) first")
        return (self.score_samples(x) > self.threshold).astype(np.int64)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"this {self.name} detector is not fitted yet: call fit() first")

    # ---- to implement -------------------------------------------------------------------
    def _fit(self, train: torch.Tensor, val: torch.Tensor, **train_options: Any) -> None:
        raise NotImplementedError

    def _score(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """One file, written atomically: config, weights, normalisation, threshold, versions."""
        self._check_fitted()
        path = check_output_file(path, "model file")
        # everything but the tensors goes through JSON: plain types only, loadable weights-only
        meta = json.loads(json.dumps({
            "method": self.name, "preset": self.preset, "config": self.config, "seed": self.seed,
            "threshold": self.threshold, "threshold_rule": self.threshold_rule,
            "fit_info": self.fit_info, "versions": versions()}, default=_json_default))
        payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, **meta,
                   "state": self._get_state()}
        buf = io.BytesIO()
        torch.save(payload, buf)
        with atomic_open(path) as fh:
            fh.write(buf.getvalue())
        return path

    @classmethod
    def params_from_config(cls, preset: str, config: dict[str, Any], seed: int, device: str) -> dict[str, Any]:
        """Constructor arguments that give a saved model's `config`: every option that differs
        from its preset under this version's defaults."""
        base = json.loads(json.dumps({**cls.defaults, **cls.presets.get(preset, {})}, default=_json_default))
        options = {k: v for k, v in config.items() if k not in base or base[k] != v}
        epochs = options.pop("epochs", None)
        return {"preset": preset, "epochs": epochs, "seed": seed, "device": device, **options}

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "not fitted"
        return f"{type(self).__name__}(preset={self.preset!r}, seed={self.seed}, {state})"


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """A saved model's contents, checked (a oneclass model of the format this version reads),
    without building the detector: what `load` and `oneclass info` start from."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    damage = archive_damage(path)
    if damage:
        raise ModelFileError(f"{path} is not a readable oneclass model (corrupt file): {damage}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, refused globals: all mean "not ours"
        raise ModelFileError(f"{path} is not a readable oneclass model (corrupt, truncated or foreign file): "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a oneclass model file")
    if payload.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelFileError(f"{path} has model format {payload.get('format_version')}; this oneclass "
                             f"reads format {MODEL_FORMAT_VERSION}")
    return payload


def describe_model(path: str | os.PathLike) -> dict[str, Any]:
    """What a saved model is, read without building it (also for a method not registered here):
    method, preset, seed, input, components, the options that differ from the preset, threshold,
    training (epochs, kept epoch, images, seconds, device), parameter count, versions."""
    from .registry import detector_class, methods
    path = Path(path)
    payload = read_model_file(path)
    config = payload.get("config") or {}
    method = payload.get("method")
    cls = detector_class(method) if isinstance(method, str) and method in methods() else None
    options = None
    if cls is not None:
        params = cls.params_from_config(payload["preset"], config, payload["seed"], "auto")
        options = {k: v for k, v in params.items() if k not in ("preset", "seed", "device") and v is not None}
    networks = (payload.get("state") or {}).get("networks")
    parameters = (sum(t.numel() for sd in networks.values() for t in sd.values() if torch.is_tensor(t))
                  if isinstance(networks, dict) else None)
    return {"file": str(path), "bytes": path.stat().st_size, "method": method,
            "description": cls.description if cls is not None else None, "preset": payload.get("preset"),
            "seed": payload.get("seed"), "input": {"channels": config.get("channels"), "size": config.get("size")},
            "video": bool(config.get("video")),
            "components": list(cls.components) if cls is not None else None,
            "headline": cls.headline if cls is not None else None, "options": options,
            "threshold": payload.get("threshold"), "threshold_rule": payload.get("threshold_rule"),
            "training": {"epochs": config.get("epochs"),
                         **{k: v for k, v in (payload.get("fit_info") or {}).items() if k != "history"}},
            "parameters": parameters, "versions": payload.get("versions")}


def load(path: str | os.PathLike, device: str | None = "auto") -> Detector:
    """Load a saved detector. No code in the file is executed (weights-only unpickling)."""
    from .registry import detector_class, methods
    payload = read_model_file(path)
    if not isinstance(payload.get("method"), str) or payload["method"] not in methods():
        raise ModelFileError(f"{path} was saved by method {payload.get('method')!r}, which is not registered here: "
                             "import or install the package that registers it (oneclass.register, or the "
                             "entry-point group oneclass.methods)")
    try:
        cls = detector_class(payload["method"])
        det = cls.__new__(cls)  # state comes from the file, not from the presets
        det.preset, det.config, det.seed = payload["preset"], payload["config"], payload["seed"]
        det.device_name = "auto" if device is None else str(device)
        det.threshold, det.threshold_rule = payload["threshold"], payload["threshold_rule"]
        det.fit_info = payload.get("fit_info", {})
        det._params = cls.params_from_config(det.preset, det.config, det.seed, det.device_name)
        det._set_state(payload["state"])
        det.fitted = True
    except OneClassError:
        raise
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise ModelFileError(f"{path}: model file is incomplete or does not match method "
                             f"{payload.get('method')!r}: {type(e).__name__}: {e}") from e
    return det
