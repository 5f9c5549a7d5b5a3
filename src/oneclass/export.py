"""ONNX export of a fitted detector's whole scoring path: uint8 images in, scores out.

The graph holds the input conversion (uint8 → the method's value range), every network, the
validation normalisation saved with the model and the score combination, so an ONNX runtime
gives the same scores as `Detector.score_components` without Python or oneclass:

    oneclass export --model m.oneclass --format onnx --out m.onnx

Inputs: `images`, uint8 N×C×H×W at the model's channels and size (any batch size N; resizing
and channel conversion of other images are not in the graph: `Detector.prepare` does them).
Outputs: `score` (the headline, N) and one output per score component (N each). The file's
metadata (`metadata_props`, keys `oneclass.*`) says what the model is and, where one was set, the
threshold `predict` uses (novel: score > threshold), so a deployment needs no second file."""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .detector import Detector
from .errors import OneClassError
from .fileio import atomic_open, check_output_file
from .neural import reference_convolutions

FORMATS = ("onnx",)
OPSET = 18


class ScoringGraph(nn.Module):
    """A detector's scoring path as one module: uint8 batch → (headline, *components)."""

    def __init__(self, det: Any) -> None:
        super().__init__()
        # a copy, so the user's detector is untouched; masked layers folded (one matrix each)
        det = copy.copy(det)
        det.networks = _fold_masks(copy.deepcopy(det.networks))
        self.det = det
        self.networks = det.networks  # registered, so their weights are the graph's parameters
        self.components = list(det.components)
        self.shifts = {k: float(m.low) for k, m in det.normalisers.items()}
        self.spans = {k: float(m.span) for k, m in det.normalisers.items()}

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.det.raw_scores(self.det.inputs(images))
        scores = {k: (v - self.shifts[k]) / self.spans[k] if k in self.shifts else v for k, v in raw.items()}
        scores = self.det.combine(scores)
        return (scores[self.det.headline], *(scores[k] for k in self.components))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs a line per torchvision operator it cannot register (torchvision is not a
    dependency) and a deprecation warning of its own: neither is about this model."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        log.setLevel(level)


def _fold_masks(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        setattr(module, name, child.folded() if hasattr(child, "folded") else _fold_masks(child))
    return module


def exportable(det: Detector) -> str | None:
    """None when `det` can be exported, else the reason it cannot (one line)."""
    from .neural import NeuralDetector
    if not isinstance(det, NeuralDetector):
        return (f"method {det.name!r} is a scikit-learn model (PCA + {det.name}), not a network: it cannot be "
                "exported to ONNX; score it with oneclass")
    if getattr(det, "not_exportable", None):
        return f"method {det.name!r} cannot be exported to ONNX: {det.not_exportable}"
    if det.config.get("video"):
        return (f"this {det.name!r} model scores video clips through patch grids and temporal windows that are "
                "outside the network; only image models are exported")
    return None


def export_onnx(det: Detector, out: str | os.PathLike) -> dict[str, Any]:
    """Write `det`'s scoring graph to `out` (one self-contained .onnx file, written atomically);
    returns what was written (inputs, outputs, bytes)."""
    det._check_fitted()
    why = exportable(det)
    if why is not None:
        raise OneClassError(why)
    out = check_output_file(out, "ONNX file")
    try:
        import onnx  # torch's exporter needs both
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise OneClassError(f"ONNX export needs the packages of the extra: pip install 'oneclass[onnx]' ({e})") from e
    graph = ScoringGraph(det).eval()
    det.train_mode(False)
    example = torch.zeros((2, det.channels, det.image_size, det.image_size), dtype=torch.uint8, device=det.device)
    outputs = ["score", *det.components]
    batch = torch.export.Dim("batch", min=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_file = Path(tmp) / "model.onnx"
        # the graph keeps every convolution a Conv node (`gemm_small_maps` is for PyTorch's CPU
        # kernels; an ONNX runtime picks its own)
        with torch.inference_mode(False), torch.no_grad(), _quiet_exporter(), reference_convolutions():
            program = torch.onnx.export(graph, (example,), input_names=["images"], output_names=outputs,
                                        dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True,
                                        external_data=False, verbose=False,
                                        # onnxscript's graph optimiser drops `+ 1e-12` (MemAE's
                                        # shrinkage then divides 0 by 0); onnxruntime optimises at load
                                        optimize=False)
        program.save(str(tmp_file), external_data=False)
        model = onnx.load(str(tmp_file))
        onnx.helper.set_model_props(model, onnx_metadata(det))
        data = model.SerializeToString()
    with atomic_open(out) as fh:
        fh.write(data)
    return {"path": str(out), "bytes": len(data), "inputs": {"images": ["N", det.channels, det.image_size,
                                                                         det.image_size, "uint8"]},
            "outputs": outputs, "headline": det.headline, "opset": OPSET, "threshold": det.threshold}


def onnx_metadata(det: Detector) -> dict[str, str]:
    """The exported file's `metadata_props`: the model's identity, input convention and
    threshold (absent where none was set), as strings (ONNX's metadata holds only strings)."""
    from . import __version__
    props = {"oneclass.version": __version__, "oneclass.method": det.name, "oneclass.preset": det.preset,
             "oneclass.headline": det.headline,
             "oneclass.input": f"images: uint8 N×{det.channels}×{det.image_size}×{det.image_size}",
             "oneclass.config": json.dumps(det.config, sort_keys=True)}
    if det.threshold is not None:
        props["oneclass.threshold"] = repr(float(det.threshold))  # repr: the float back exactly
        props["oneclass.threshold_rule"] = json.dumps(det.threshold_rule, sort_keys=True)
    return props
