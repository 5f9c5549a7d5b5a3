"""Methods of one's own: `oneclass.register` and the `oneclass.methods` entry-point group put a
Detector subclass under the same API, evaluation, report and CLI as the built-in methods."""
import json
import textwrap
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from click.testing import CliRunner
from torch import nn

import oneclass
from oneclass import registry
from oneclass.cli import main
from oneclass.detector import Detector
from oneclass.errors import OneClassError
from oneclass.evaluation import EvalSpec, evaluate
from oneclass.neural import NEURAL_DEFAULTS, NeuralDetector

MEAN_DISTANCE = '''
import torch
from oneclass.detector import Detector

class MeanDistance(Detector):
    name = "mean-distance"
    description = "L2 distance to the mean normal image"
    presets = {"mnist": {"channels": 1, "size": 28}}
    components = ("dist",)
    headline = "dist"

    def _fit(self, train, val, **_):
        self.mean = train.float().mean(0)

    def _score(self, images):
        return {"dist": ((images.float() - self.mean) ** 2).flatten(1).sum(1).sqrt().numpy()}

    def _get_state(self):
        return {"mean": self.mean}

    def _set_state(self, state):
        self.mean = state["mean"]
'''


@pytest.fixture
def own_registry(monkeypatch):
    """A copy of the registry for one test: what it registers is gone afterwards."""
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [])


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "plugin_mean_distance.py").write_text(textwrap.dedent(MEAN_DISTANCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    return importlib.import_module("plugin_mean_distance")


class TinyAE(NeuralDetector):
    """A neural method of one's own: the shared trainer, validation, checkpoints and scoring."""
    name = "tiny-ae"
    description = "a small fully connected autoencoder"
    defaults = {**NEURAL_DEFAULTS, "value_range": (0.0, 1.0), "code": 8}
    presets = {"mnist": {"channels": 1, "size": 28, "epochs": 2, "batch_size": 32}}
    components = ("rec",)
    headline = "rec"

    def build_networks(self):
        code = self.config["code"]
        return {"ae": nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, code), nn.ReLU(),
                                    nn.Linear(code, 784))}

    def train_step(self, batch, ctx):
        loss = self.validation_losses(batch)["rec"]
        self.optimizers["all"].zero_grad()
        loss.backward()
        self.optimizers["all"].step()
        return {"rec": loss.detach()}

    def validation_losses(self, batch):
        return {"rec": self.raw_scores(self.inputs(batch))["rec"].mean()}

    def raw_scores(self, x):
        return {"rec": ((self.networks["ae"](x) - x.flatten(1)) ** 2).sum(1)}


def test_a_registered_method_fits_evaluates_saves_and_loads_like_a_built_in(own_registry, plugin_module, tmp_path,
                                                                            embedded_data):
    cls = oneclass.register(plugin_module.MeanDistance)
    assert oneclass.register(cls) is cls  # registering the same class again changes nothing
    oneclass.register(TinyAE)
    assert {"mean-distance", "tiny-ae"} <= set(oneclass.methods())
    train, test = embedded_data
    for method in ("mean-distance", "tiny-ae"):
        (record,) = evaluate(EvalSpec(method=method, dataset="mnist-embedded", classes=[1], device="cpu"), None,
                             tmp_path / "res", progress=False, echo=lambda s: None)
        assert record["method"] == method and record["metrics"][record["headline"]]["auroc"] > 0.8
        det = oneclass.create(method, device="cpu").fit(train.images[train.labels == 1][:120], progress=False)
        loaded = oneclass.load(det.save(tmp_path / f"{method}.oneclass"), device="cpu")
        np.testing.assert_array_equal(loaded.score_samples(test.images[:20]), det.score_samples(test.images[:20]))
    # where the method is not registered, a saved model of it says so, and what it is
    del registry._METHODS["tiny-ae"]  # (this test's own copy of the registry)
    with pytest.raises(oneclass.ModelFileError, match="saved by method 'tiny-ae', which is not registered here"):
        oneclass.load(tmp_path / "tiny-ae.oneclass")
    info = CliRunner().invoke(main, ["info", "--model", str(tmp_path / "tiny-ae.oneclass")]).output
    assert "tiny-ae (preset mnist, seed 0)" in info and "method not registered here" in info
    # the report reads a plugin's runs in a process that never registered it
    rep = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "res")])
    assert rep.exit_code == 0 and "## mean-distance — mnist-embedded" in rep.output and "## tiny-ae" in rep.output


class _Named(Detector):
    presets = {"mnist": {"channels": 1, "size": 28}}
    components = ("s",)
    headline = "s"


@pytest.mark.parametrize("attrs, message", [
    ({"name": "My AE"}, "set name to lowercase letters, digits and single hyphens"),
    ({"name": "a__b"}, "set name to lowercase letters"),       # `__` separates the parts of a run folder
    ({}, "got None"),                                           # no name of its own
    ({"name": "dae"}, "method name 'dae' is taken by a built-in method"),
    ({"name": "x", "presets": {}}, "no presets"),
    ({"name": "x", "presets": {"mnist": {"channels": 1}}}, "preset 'mnist' does not set size"),
    ({"name": "x", "headline": "t"}, "headline 't' must be one of its components"),
])
def test_register_refuses_a_class_it_could_not_run_naming_the_fault(own_registry, attrs, message):
    cls = type("Mine", (_Named,), dict(attrs))
    with pytest.raises(OneClassError, match=message):
        oneclass.register(cls)
    with pytest.raises(OneClassError, match="takes a Detector subclass"):
        oneclass.register(nn.Linear)
    oneclass.register(type("First", (_Named,), {"name": "x"}))
    with pytest.raises(OneClassError, match="method name 'x' is taken by .*First"):
        oneclass.register(type("Second", (_Named,), {"name": "x"}))


def test_installed_plugins_are_found_by_entry_point_and_a_broken_one_is_left_out(own_registry, plugin_module,
                                                                                tmp_path, monkeypatch):
    points = [EntryPoint("mean-distance", "plugin_mean_distance:MeanDistance", registry.PLUGIN_GROUP),
              EntryPoint("broken", "no_such_module_here:Detector", registry.PLUGIN_GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: points if group == registry.PLUGIN_GROUP else [])
    # asked for by name first (a saved model's method, `create`): the plugins are looked up then too
    with pytest.warns(UserWarning, match=r"oneclass plugin 'broken' \(no_such_module_here:Detector\) left out"):
        assert oneclass.create("mean-distance").name == "mean-distance"
    listed = CliRunner().invoke(main, ["methods"]).output
    assert "mean-distance" in listed and "lsa" in listed  # the built-in methods stay
    result = CliRunner().invoke(main, ["evaluate", "--method", "mean-distance", "--dataset", "mnist-embedded",
                                       "--classes", "0", "--results", str(tmp_path / "res"), "--quiet"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "res").glob("mean-distance__*/class0_seed0.json")
    assert json.loads(run.read_text())["metrics"]["dist"]["auroc"] > 0.8
