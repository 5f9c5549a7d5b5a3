"""Shallow baselines of LSA Table 1: OC-SVM and KDE on PCA-whitened pixels (scikit-learn).

Neither has published hyper-parameters; the choices are stated in `defaults` and kept fixed
(KDE's bandwidth is picked by cross-validated likelihood on the normal training data only,
which needs no labels). A saved model keeps its training images and is refitted on load:
both fits are deterministic, so the reloaded detector scores identically."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import OneClassSVM

from ..detector import Detector
from ..errors import DataError, OneClassError

_SHALLOW_PRESETS = {"mnist": {"channels": 1, "size": 28}, "cifar10": {"channels": 3, "size": 32},
                    "fashion-mnist": {"channels": 1, "size": 28}}


class _PCADetector(Detector):
    # keep the components explaining 90% of the variance, or a fixed number (`pca_components`:
    # LSA's "features extracted by PCA-whitening" does not say how many, and KDE's AUROC hangs on it)
    defaults: dict[str, Any] = {"pca_variance": 0.9, "pca_components": None}
    option_types = {"pca_components": "int|None"}
    added_later = {"pca_components": None}
    presets = _SHALLOW_PRESETS
    components = ("score",)
    headline = "score"

    def make_estimator(self):
        raise NotImplementedError

    def _features(self, images: torch.Tensor) -> np.ndarray:
        return images.flatten(1).numpy().astype(np.float64) / 255.0

    def _fit(self, train: torch.Tensor, val: torch.Tensor, **_: Any) -> None:
        t0 = time.perf_counter()
        features = self._features(train)
        if not np.ptp(features, axis=0).any():
            # PCA-whitening divides by each component's spread: with none, the features are NaN or
            # infinite and the scores meaningless, with no error from scikit-learn
            raise DataError("training data: every image is the same; PCA-whitening needs normal images that vary")
        self.train_images = train.clone()
        pca = PCA(n_components=self._n_components(train), whiten=True, svd_solver="full")
        self.pipeline: Pipeline = make_pipeline(pca, self.make_estimator()).fit(features)
        spread = pca.explained_variance_
        if spread[-1] <= 1e-12 * spread[0]:
            rank = int((spread > 1e-12 * spread[0]).sum())
            raise OneClassError(f"pca_components={pca.n_components_}: the {len(train)} training images span only "
                                f"{rank} direction{'s' if rank != 1 else ''}; whitening a component with no "
                                f"variance divides by zero (give at most {rank})")
        seconds = time.perf_counter() - t0
        self.fit_info = {"train_seconds": seconds, "train_images_per_second": len(train) / max(seconds, 1e-9),
                         "device": "cpu", "n_train": len(train), "n_val": len(val),
                         "pca_components": int(pca.n_components_), **self.chosen()}

    def _n_components(self, train: torch.Tensor) -> float | int:
        fixed = self.config["pca_components"]
        if fixed is None:
            return self.config["pca_variance"]
        limit = min(len(train), train[0].numel())
        if not 1 <= fixed <= limit:
            raise OneClassError(f"pca_components={fixed}: PCA of {len(train)} training images of {train[0].numel()} "
                                f"values gives 1 to {limit} components")
        return int(fixed)

    def chosen(self) -> dict[str, Any]:
        return {}

    def _score(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        # score_samples is "higher = more normal" for both estimators: negate
        return {"score": -self.pipeline.score_samples(self._features(images))}

    def _get_state(self) -> dict[str, Any]:
        return {"train_images": self.train_images}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._fit(state["train_images"], state["train_images"][:0])


class OCSVMDetector(_PCADetector):
    name = "ocsvm"
    description = "One-class SVM (RBF) on PCA-whitened pixels (LSA Table 1 baseline)"
    defaults = {**_PCADetector.defaults, "nu": 0.1, "gamma": "scale"}
    option_types = {**_PCADetector.option_types, "gamma": "str|float"}  # scikit-learn's "scale", "auto" or a number

    def make_estimator(self):
        return OneClassSVM(kernel="rbf", nu=self.config["nu"], gamma=self.config["gamma"])


class KDEDetector(_PCADetector):
    name = "kde"
    description = "Gaussian kernel density on PCA-whitened pixels, bandwidth by 5-fold CV likelihood (LSA Table 1)"
    # 10^(k/4), k = −4 … 6, written out: np.logspace's last bit differs between CPUs (its SIMD
    # pow), and a run's identity hashes its resolved options (these are the committed runs' values)
    defaults = {**_PCADetector.defaults,
                "bandwidths": [0.1, 0.1778279410038923, 0.31622776601683794, 0.5623413251903491, 1.0,
                               1.7782794100389228, 3.1622776601683795, 5.62341325190349, 10.0, 17.78279410038923,
                               31.622776601683793]}

    def make_estimator(self):
        return GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": self.config["bandwidths"]}, cv=5)

    def chosen(self) -> dict[str, Any]:
        return {"bandwidth": float(self.pipeline[-1].best_params_["bandwidth"])}
