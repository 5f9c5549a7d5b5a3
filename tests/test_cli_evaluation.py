"""Cached evaluation (skip, redo damaged, determinism), the report, and the CLI end to end."""
import csv
import io
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import oneclass
from click.testing import CliRunner
from PIL import Image

from oneclass.cli import main
from oneclass.evaluation import EvalSpec, collect, evaluate, read_log, record_path, rekey, run_key
from oneclass.report import report

REQUIRED_KEYS = {"method", "preset", "dataset", "protocol", "protocol_info", "normal_class", "seed", "epochs",
                 "device", "versions", "config", "metrics", "headline", "train_seconds",
                 "train_images_per_second", "score_images_per_second"}

FAST = {"batch_size": 128, "lr": 1e-3}


def run_cli(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_evaluate_writes_caches_and_skips(tmp_path):
    spec = EvalSpec("dae", "mnist-embedded", classes=[1], epochs=1, device="cpu", options=FAST)
    lines: list[str] = []
    t0 = time.perf_counter()
    first = evaluate(spec, None, tmp_path, progress=False, echo=lines.append)
    wall = time.perf_counter() - t0
    (path,) = list(tmp_path.glob("dae_*__mnist-embedded__standard__e1__*/class1_seed0.json"))
    data = json.loads(path.read_text())
    assert REQUIRED_KEYS <= set(data)
    assert 0 < data["train_seconds"] < wall  # the fit's own time, within the whole call's
    assert data["train_images_per_second"] > 0 and data["score_images_per_second"] > 0
    assert "f1_at_tau_0.5" not in data["metrics"]["rec"]  # τ = 0.5 is ALOCC's rule on D, not a reconstruction's
    assert set(data["metrics"]["rec"]) >= {"auroc", "aupr", "eer", "f1_best"}
    info = data["protocol_info"]
    assert info["seed"] == 0 and info["counts"]["test"] == 2000 and info["counts"]["test_normal"] == 200
    assert not list(path.parent.glob("_work/*.ckpt"))  # a finished run keeps no checkpoint
    assert not list(path.parent.glob("_work/*.jsonl"))  # its epoch log is kept compressed
    log = read_log(path)
    assert [r["epoch"] for r in log if "epoch" in r][-1] == 1
    # a second call trains nothing
    lines.clear()
    second = evaluate(spec, None, tmp_path, progress=False, echo=lines.append)
    assert lines and lines[0].startswith("skip") and second[0]["metrics"] == first[0]["metrics"]
    # a damaged result file is redone, and gives the same numbers (deterministic on CPU)
    path.write_text('{"metrics": ')
    lines.clear()
    third = evaluate(spec, None, tmp_path, progress=False, echo=lines.append)
    assert lines[0].startswith("run")
    assert third[0]["metrics"] == first[0]["metrics"]


def test_a_run_finished_under_other_defaults_is_not_reused_but_reported(tmp_path):
    spec = EvalSpec("ocsvm", "mnist-embedded", classes=[1])
    evaluate(spec, None, tmp_path, progress=False, echo=lambda s: None)
    (path,) = list(tmp_path.glob("*/class1_seed0.json"))
    data = json.loads(path.read_text())
    # as if the default of nu had been 0.2 when this run was made: it is another run now
    data["config"]["nu"] = data["run_identity"]["config"]["nu"] = 0.2
    data["run_key"] = run_key(data["run_identity"])
    path.unlink()
    stale = record_path(tmp_path, data)
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps(data))
    lines: list[str] = []
    evaluate(spec, None, tmp_path, progress=False, echo=lines.append)
    assert lines[0].startswith("run")  # the stale run did not answer for today's defaults
    assert path.exists() and stale.exists()  # and both are kept
    assert "other settings than today's defaults**: nu 0.2 → 0.1" in report(tmp_path, write=False)



def test_a_component_only_newer_runs_have_is_reported_over_those_runs():
    """A score component added to a method after some of its runs (the attention AE's a_raw):
    every cell is over the runs that have it, with their seeds named, and the old component's
    cells are unchanged; a class with no such run shows "–", never a mean over fewer classes."""
    from oneclass.report import group_table

    def run(cls, seed, a, a_raw=None):
        metrics = {"a": {"auroc": a}, **({"a_raw": {"auroc": a_raw}} if a_raw is not None else {})}
        return {"method": "attn-entropy", "dataset": "mnist", "protocol": "standard", "normal_class": cls,
                "seed": seed, "metrics": metrics, "options": {}}

    runs = [run(0, 0, 0.90), run(0, 1, 0.80, 0.84), run(1, 0, 0.70), run(1, 1, 0.60, 0.64)]
    header, rows, _ = group_table(runs)
    a, a_raw = header.index("a AUROC"), header.index("a_raw AUROC")
    assert rows[0][a] == "0.850 ± 0.071" and rows[0][a_raw] == "0.840 (seed 1)"
    assert rows[1][a_raw] == "0.640 (seed 1)"
    assert rows[2][a] == "0.750 ± 0.071" and rows[2][a_raw] == "0.740 (seed 1)"  # seed 1 has every class
    header, rows, _ = group_table(runs[:3])  # class 1 has no run with it
    assert rows[1][header.index("a_raw AUROC")] == "–" and rows[2][header.index("a_raw AUROC")] == "–"

BASE = dict(method="ocsvm", dataset="mnist-embedded", classes=[0], options={"nu": 0.1})


@pytest.mark.parametrize("change", [
    {"method": "kde", "options": {}},
    {"preset": "cifar10"},
    {"options": {"nu": 0.2}},
    {"options": {"nu": 0.1, "pca_variance": 0.8}},
    {"dataset": "mnist-embedded", "data_source": "MNIST (another copy)"},
    {"protocol": "coil"},
    {"classes": [1]},
    {"seeds": [1]},
])
def test_every_part_of_a_run_identity_makes_a_new_run(tmp_path, change, monkeypatch):
    """Each thing that changes a result makes a new run; the unchanged spec is reused."""
    import oneclass.evaluation as ev
    lines: list[str] = []
    evaluate(EvalSpec(**BASE), None, tmp_path, progress=False, echo=lines.append)
    assert lines[0].startswith("run")
    lines.clear()
    evaluate(EvalSpec(**BASE), None, tmp_path, progress=False, echo=lines.append)
    assert lines[0].startswith("skip")
    change = dict(change)
    if "data_source" in change:  # the same name resolving to other files (pickles vs JPEG copy)
        source = change.pop("data_source")
        monkeypatch.setattr(ev, "source_of", lambda name, root: source)
    lines.clear()
    evaluate(EvalSpec(**{**BASE, **change}), None, tmp_path, progress=False, echo=lines.append)
    assert lines[0].startswith("run"), lines
    assert len(list(tmp_path.glob("*/*.json"))) == 2  # nothing overwritten


def test_an_option_given_at_its_default_is_the_default_run(tmp_path):
    """`--option nu=0.1` where 0.1 is the default: the same run, found in the cache under the
    default run's name, and a record written under the explicit name before is moved there."""
    lines: list[str] = []
    (plain,) = evaluate(EvalSpec("ocsvm", "mnist-embedded", classes=[0]), None, tmp_path, progress=False,
                        echo=lines.append)
    (explicit,) = evaluate(EvalSpec("ocsvm", "mnist-embedded", classes=[0], options={"nu": 0.1}), None, tmp_path,
                           progress=False, echo=lines.append)
    assert [line.split()[0] for line in lines if line.split()[0] != "->"] == ["run", "skip"]
    assert explicit == plain and plain["options"] == {}
    (path,) = tmp_path.glob("*/class0_seed0.json")
    assert path.parent.name.startswith("ocsvm__mnist-embedded__")
    # another option value is another run, named by it
    (other,) = evaluate(EvalSpec("ocsvm", "mnist-embedded", classes=[1], options={"nu": 0.2, "gamma": "scale"}),
                        None, tmp_path, progress=False, echo=lines.append)
    assert other["options"] == {"nu": 0.2}
    assert list(tmp_path.glob("ocsvm_nu=0.2__*/class1_seed0.json"))
    # a record stored under the explicit name (as before this rule) is re-keyed into the default run
    legacy = tmp_path / "legacy" / f"ocsvm_nu=0.1__{path.parent.name.split('__', 1)[1]}"
    legacy.mkdir(parents=True)
    (legacy / "class2_seed0.json").write_text(json.dumps({**plain, "normal_class": 2, "options": {"nu": 0.1}}))
    assert len(rekey(tmp_path / "legacy", echo=lambda s: None)) == 1 and not legacy.exists()
    (moved,) = (tmp_path / "legacy").glob("*/class2_seed0.json")
    assert moved.parent.name == path.parent.name and json.loads(moved.read_text())["options"] == {}


@pytest.mark.parametrize("spec", [
    dict(method="ocsvm", dataset="mnist-embedded", classes=[0], preset="cifar10"),
    dict(method="ocsvm", dataset="mnist-embedded", classes=[0], options={"nu": 0.2}),
    dict(method="kde", dataset="mnist-embedded", protocol="outlier-fraction", classes=[0], outlier_fractions=[0.3]),
])
def test_a_record_holds_the_model_its_identity_names(tmp_path, spec):
    """The detector trained is the one of the run's preset and options, and the identity a
    record is re-keyed by (`identity_of`, from the record alone) is the one it was stored under."""
    from oneclass.evaluation import identity_of
    (record,) = evaluate(EvalSpec(**spec), None, tmp_path, progress=False, echo=lambda s: None)
    built = oneclass.create(spec["method"], spec.get("preset", "mnist"), device="cpu", **spec.get("options", {}))
    assert record["config"] == built.config and record["preset"] == spec.get("preset", "mnist")
    # the CPU it ran on, beside the device: speeds and rounding differ between the VM's CPU types
    from oneclass.detector import cpu_name
    assert record["host_cpu"] == cpu_name() != ""
    bare = {k: v for k, v in record.items() if k not in ("run_identity", "run_key")}
    assert identity_of(bare) == record["run_identity"]


def test_outlier_fraction_runs_are_named_by_their_fraction(tmp_path):
    spec = EvalSpec("kde", "mnist-embedded", protocol="outlier-fraction", classes=[0], outlier_fractions=[0.1, 0.25])
    evaluate(spec, None, tmp_path, progress=False, echo=lambda s: None)
    names = sorted(p.parent.name.split("__")[2] for p in tmp_path.glob("*/class0_seed0.json"))
    assert names == ["outlier-fraction-p0.1", "outlier-fraction-p0.25"]


def test_video_normalisation_variants_are_named_by_it():
    from oneclass.evaluation import group_name, run_identity
    ident = run_identity("lsa", "ped2", {"epochs": 4}, "ped2", "ped2", "video", {"normalisation": "per-clip"})
    assert group_name(ident, {}).startswith("lsa__ped2__video-per-clip__e4__")


def test_all_classes_plan_one_run_per_class(tmp_path):
    from oneclass.evaluation import plan
    tasks = plan(EvalSpec("ocsvm", "mnist-embedded", classes=None, seeds=[0, 1]), None, tmp_path)
    assert sorted((t.normal, t.seed) for t in tasks) == [(c, s) for c in range(10) for s in (0, 1)]


@pytest.mark.parametrize("text, classes", [("all", None), (" ALL ", None), ("All", None), ("0, 3", [0, 3]),
                                           ("airplane,5", ["airplane", 5])])
def test_class_lists(text, classes):
    from oneclass.evaluation import parse_classes
    assert parse_classes(text) == classes


def test_labelled_epoch_selection_runs_through_evaluate(tmp_path):
    """`select=val_auroc` (OLED's paper-style choice) hands the protocol's labelled selection set
    to the trainer; the record says how large it was."""
    spec = EvalSpec("dae", "mnist-embedded", classes=[1], epochs=1, device="cpu",
                    options={**FAST, "select": "val_auroc"})
    (record,) = evaluate(spec, None, tmp_path, progress=False, echo=lambda s: None)
    assert record["fit"]["best_value"] < 0  # −AUROC on the selection set, not a loss
    assert record["protocol_info"]["selection"] > 0


def test_an_option_added_later_names_no_run_at_its_old_value():
    """The attention AE's runs were recorded before it had `latent`: at 512 (what they ran) today's
    identity is theirs, so `evaluate` finds them; another value is another run."""
    from oneclass.evaluation import identity_of, run_identity, run_key
    record = json.loads((Path(__file__).resolve().parents[1] / "results" / "attn-entropy__mnist__standard__e15__874ecbd88f"
                         / "class0_seed0.json").read_text())
    assert "latent" not in record["config"] and run_key(identity_of(record)) == record["run_key"] == "874ecbd88f"
    config = oneclass.create("attn-entropy", "mnist", epochs=15, device="cpu").config
    assert config["latent"] == 512
    today = run_identity("attn-entropy", "mnist", config, "mnist", record["data_source"], "standard", {})
    assert "latent" not in today["config"] and run_key(today) == record["run_key"]
    other = run_identity("attn-entropy", "mnist", {**config, "latent": 100}, "mnist", record["data_source"], "standard", {})
    assert other["config"]["latent"] == 100 and run_key(other) != record["run_key"]


def test_epochs_change_the_run_identity(tmp_path):
    lines: list[str] = []
    for epochs, expect in ((1, "run"), (1, "skip"), (2, "run")):
        lines.clear()
        evaluate(EvalSpec("dae", "mnist-embedded", classes=[0], epochs=epochs, device="cpu",
                          options={"batch_size": 512}), None, tmp_path, progress=False, echo=lines.append)
        assert lines[0].startswith(expect)


def test_a_whole_number_for_a_real_option_is_the_same_run(tmp_path):
    """`gamma=2` and `gamma=2.0` are one setting: one identity, one folder, one cached run; a record
    an older version keyed with the whole number is re-keyed to it (the attention AE's `--choose
    w_inf=1,0.1` runs were once keyed apart from the suite's `w_inf: [1.0, 0.1]`)."""
    lines: list[str] = []
    (first,) = evaluate(EvalSpec("ocsvm", "mnist-embedded", classes=[0], options={"gamma": 2}), None, tmp_path,
                        progress=False, echo=lines.append)
    (again,) = evaluate(EvalSpec("ocsvm", "mnist-embedded", classes=[0], options={"gamma": 2.0}), None, tmp_path,
                        progress=False, echo=lines.append)
    assert [line.split()[0] for line in lines if line.split()[0] != "->"] == ["run", "skip"] and again == first
    (path,) = tmp_path.glob("*/class0_seed0.json")
    assert path.parent.name.startswith("ocsvm_gamma=2.0__") and first["run_identity"]["config"]["gamma"] == 2.0
    # as an older version wrote it: the whole number in the identity, keyed and named by it
    ident = json.loads(json.dumps(first["run_identity"]))
    ident["config"]["gamma"] = 2
    legacy_key = run_key(ident)
    assert legacy_key != first["run_key"]
    legacy = tmp_path / "legacy" / f"ocsvm_gamma=2__mnist-embedded__standard__ena__{legacy_key}"
    legacy.mkdir(parents=True)
    old = {**first, "normal_class": 1, "options": {"gamma": 2}, "run_identity": ident, "run_key": legacy_key,
           "config": {**first["config"], "gamma": 2}}
    (legacy / "class1_seed0.json").write_text(json.dumps(old))
    assert len(rekey(tmp_path / "legacy", echo=lambda s: None)) == 1 and not legacy.exists()
    (moved,) = (tmp_path / "legacy").glob("*/class1_seed0.json")
    assert moved.parent.name == path.parent.name
    rec = json.loads(moved.read_text())
    assert rec["run_key"] == first["run_key"] and rec["options"] == {"gamma": 2.0} and rec["config"]["gamma"] == 2.0


def test_rekey_moves_legacy_runs_without_losing_any(tmp_path):
    spec = EvalSpec("ocsvm", "mnist-embedded", classes=[0, 1])
    runs = evaluate(spec, None, tmp_path / "new", progress=False, echo=lambda s: None)
    legacy = tmp_path / "old" / "ocsvm__mnist-embedded__standard__ena"
    (legacy / "_work").mkdir(parents=True)
    for r in runs:  # as written before run keys: no identity, an epoch log in _work
        r = {k: v for k, v in r.items() if k not in ("run_identity", "run_key")}
        (legacy / f"class{r['normal_class']}_seed0.json").write_text(json.dumps(r))
        (legacy / "_work" / f"class{r['normal_class']}_seed0.log.jsonl").write_text('{"epoch": 1}\n')
    moves = rekey(tmp_path / "old", echo=lambda s: None)
    assert len(moves) == 2 and not legacy.exists()
    for r in runs:
        moved = record_path(tmp_path / "old", r)
        assert json.loads(moved.read_text())["metrics"] == r["metrics"]
        assert read_log(moved) == [{"epoch": 1}]
    # now the cache answers for them: nothing is run again
    lines: list[str] = []
    evaluate(spec, None, tmp_path / "old", progress=False, echo=lines.append)
    assert all(line.startswith("skip") for line in lines)
    # a legacy record whose place holds a different run of the same identity is reported and kept
    other = {k: v for k, v in runs[0].items() if k not in ("run_identity", "run_key")}
    other["metrics"] = {"score": {"auroc": 0.5}}
    legacy.mkdir()
    (legacy / "class0_seed0.json").write_text(json.dumps(other))
    lines.clear()
    assert rekey(tmp_path / "old", echo=lines.append) == []
    assert any(line.startswith("clash: ") and "left in place" in line for line in lines)
    assert (legacy / "class0_seed0.json").exists()
    assert json.loads(record_path(tmp_path / "old", runs[0]).read_text())["metrics"] == runs[0]["metrics"]


def test_outlier_fraction_runs_share_one_model_and_report(tmp_path):
    spec = EvalSpec("ocsvm", "mnist-embedded", protocol="outlier-fraction", classes=[0], outlier_fractions=[0.1, 0.5])
    runs = evaluate(spec, None, tmp_path, progress=False, echo=lambda s: None)
    fractions = sorted(r["protocol_info"]["outlier_fraction"] for r in runs)
    assert fractions == [0.1, 0.5]
    # one model for both fractions: trained once (one training time), scored on two test sets
    assert runs[0]["train_seconds"] == runs[1]["train_seconds"] and runs[0]["fit"] == runs[1]["fit"]
    assert runs[0]["metrics"] != runs[1]["metrics"]
    for r in runs:
        c = r["protocol_info"]["counts"]
        assert c["test_novel"] / c["test"] == pytest.approx(r["protocol_info"]["outlier_fraction"], abs=0.01)
    text = report(tmp_path)
    assert "ocsvm" in text and (tmp_path / "report.md").exists() and (tmp_path / "report.csv").exists()


def test_paper_values_follow_options():
    from oneclass.report import paper_value
    full = paper_value("attn-entropy", "cifar10", "standard", "a")
    assert full["mean"] == pytest.approx(0.6555)
    # the ablation switch has its own entry; epoch selection and options at their defaults do not change the method
    assert paper_value("attn-entropy", "cifar10", "standard", "a", '{"attention": false}')["mean"] == pytest.approx(0.642)
    assert paper_value("attn-entropy", "cifar10", "standard", "a", '{"skips": false}') == full
    assert paper_value("oled", "mnist", "memae", "avg", '{"select": "val_auroc"}')["mean"] == pytest.approx(0.9845)
    assert paper_value("attn-entropy", "cifar10", "standard", "a", '{"skips": true}') is None


def test_cli_methods_and_datasets():
    assert "lsa" in run_cli("methods").output
    out = run_cli("datasets").output
    assert "mnist" in out and "cifar10" in out and "mnist-embedded" in out


@pytest.mark.parametrize("args, message", [
    (["fit", "--method", "nope", "--dataset", "mnist-embedded", "--normal-class", "0", "--out", "m"], "known methods"),
    (["fit", "--method", "dae", "--dataset", "imagenet", "--normal-class", "0", "--out", "m"], "known datasets|unknown dataset"),
    (["fit", "--method", "dae", "--dataset", "mnist-embedded", "--normal-class", "12", "--out", "m"], "out of range"),
    (["fit", "--method", "dae", "--dataset", "mnist", "--data-root", "/nonexistent", "--normal-class", "0",
      "--out", "m"], "/nonexistent"),
    (["evaluate", "--method", "dae", "--dataset", "mnist-embedded", "--seeds", "a,b"], "--seeds"),
    (["fit", "--method", "dae", "--dataset", "mnist-embedded", "--normal-class", "0", "--option", "lr", "--out", "m"],
     "key=value"),
    (["fit", "--method", "alocc", "--dataset", "mnist-embedded", "--normal-class", "0", "--option", "optimizer=sgd",
      "--out", "m"], "optimizer='sgd'.*must be one of 'adam', 'rmsprop'"),
    (["fit", "--method", "lsa", "--dataset", "mnist-embedded", "--normal-class", "0", "--option", "estimator=pixelcnn",
      "--out", "m"], "estimator='pixelcnn'"),
    # said before the data is read (there is none at /nonexistent): no wait for a large dataset first
    (["fit", "--method", "nope", "--dataset", "mnist", "--data-root", "/nonexistent", "--normal-class", "0",
      "--out", "m"], "unknown method 'nope'"),
    (["fit", "--method", "dae", "--dataset", "mnist", "--data-root", "/nonexistent", "--normal-class", "0",
      "--option", "foo=1", "--out", "m"], r"unknown option\(s\) \['foo'\]"),
    (["fit", "--method", "lsa", "--dataset", "ped2", "--data-root", "/nonexistent", "--epochs", "0", "--out", "m"],
     "epochs=0 of method 'lsa': must be greater than 0"),
    (["evaluate", "--method", "nope", "--dataset", "cifar10", "--data-root", "/nonexistent"], "unknown method 'nope'"),
    (["evaluate", "--method", "dae", "--dataset", "mnist", "--data-root", "/nonexistent", "--epochs", "0"],
     "epochs=0 of method 'dae': must be greater than 0"),
    (["evaluate", "--method", "dae", "--dataset", "mnist", "--data-root", "/nonexistent", "--choose", "foo=1,2"],
     r"unknown option\(s\) \['foo'\]"),
    (["evaluate", "--method", "dae", "--dataset", "mnist", "--data-root", "/nonexistent", "--seeds", "0,-1"],
     "seed=-1: give a whole number ≥ 0"),
])
def test_cli_errors_are_one_line(args, message, tmp_path):
    result = run_cli(*args, ok=False)
    assert result.exit_code == 1
    err = result.output.strip()
    assert err.startswith("error:") and "Traceback" not in err
    import re
    assert re.search(message, err), err


def test_fit_refuses_a_threshold_quantile_outside_0_1_before_training():
    result = run_cli("fit", "--method", "dae", "--dataset", "mnist-embedded", "--normal-class", "0",
                     "--quantile", "95", "--out", "m", ok=False)
    assert result.exit_code == 2 and "'--quantile': 95.0 is not in the range 0.0<=x<=1.0" in result.output


def test_cli_fit_on_a_folder_then_score(tmp_path, embedded_split):
    # a user's own folder of normal images (PNG), then a folder to score
    normal, mixed = tmp_path / "normal", tmp_path / "incoming"
    normal.mkdir(), mixed.mkdir()
    for i, img in enumerate(embedded_split.train.images[:60, 0].numpy()):
        Image.fromarray(img).save(normal / f"n{i:03d}.png")
    for i, img in enumerate(embedded_split.test.images[:12, 0].numpy()):
        Image.fromarray(np.repeat(img[..., None], 3, axis=2)).resize((40, 40)).save(mixed / f"t{i:03d}.jpg")
    (mixed / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    model = tmp_path / "model.oneclass"
    out = run_cli("fit", "--method", "dae", "--train-dir", normal, "--epochs", "1", "--device", "cpu",
                  "--option", "batch_size=32", "--quiet", "--out", model).output
    assert "saved" in out and model.exists()
    scores = tmp_path / "scores.csv"
    run_cli("score", "--model", model, "--input", mixed, "--output", scores)
    rows = list(csv.DictReader(scores.open()))
    assert len(rows) == 12 and set(rows[0]) == {"path", "score", "rec", "label"}
    assert all(np.isfinite(float(r["score"])) and r["label"] in ("0", "1") for r in rows)
    # one file scores the same as in the folder
    one = run_cli("score", "--model", model, "--input", mixed / "t000.jpg").output.splitlines()
    assert one[1].split(",")[1] == rows[0]["score"]
    # a method whose one component is named `score` gives that column once
    svm = tmp_path / "svm.oneclass"
    run_cli("fit", "--method", "ocsvm", "--train-dir", normal, "--quiet", "--out", svm)
    header = run_cli("score", "--model", svm, "--input", mixed).output.splitlines()[0]
    assert header == "path,score,label"


def test_cli_threshold_resets_a_saved_models_threshold_without_refitting(tmp_path, embedded_split):
    """An engineer moves the threshold of a saved model: a quantile of normal reference images,
    a contamination of a mixed batch, or a value read off the scores; `score` labels by it."""
    ref, mixed = tmp_path / "reference", tmp_path / "incoming"
    ref.mkdir(), mixed.mkdir()
    for i, img in enumerate(embedded_split.val.images[:40, 0].numpy()):
        Image.fromarray(img).save(ref / f"r{i:02d}.png")
    for i, img in enumerate(embedded_split.test.images[:20, 0].numpy()):
        Image.fromarray(img).save(mixed / f"t{i:02d}.png")
    model, moved = tmp_path / "m.oneclass", tmp_path / "moved.oneclass"
    oneclass.create("ocsvm").fit(embedded_split.train.images[:100]).save(model)
    before = model.read_bytes()
    det = oneclass.load(model)
    ref_scores = det.score_samples(embedded_split.val.images[:40])
    out = run_cli("threshold", "--model", model, "--input", ref, "--quantile", "0.9", "--out", moved).output
    assert f"threshold {np.quantile(ref_scores, 0.9):.6g} (quantile 0.9 of 40 images of {ref}; 4 of them above it)" in out
    assert model.read_bytes() == before  # --out: the original is left as it was
    saved = oneclass.load(moved)
    assert saved.threshold == pytest.approx(np.quantile(ref_scores, 0.9))
    assert saved.threshold_rule == {"quantile": 0.9, "of": f"40 images of {ref}"}
    rows = list(csv.DictReader(io.StringIO(run_cli("score", "--model", moved, "--input", mixed).output)))
    assert [int(r["label"]) for r in rows] == [int(float(r["score"]) > saved.threshold) for r in rows]
    # contamination 0.25 of a mixed batch flags its top quarter; the model file itself is replaced
    run_cli("threshold", "--model", moved, "--input", mixed, "--contamination", "0.25")
    rows = list(csv.DictReader(io.StringIO(run_cli("score", "--model", moved, "--input", mixed).output)))
    assert sum(int(r["label"]) for r in rows) == 5
    run_cli("threshold", "--model", moved, "--value", "-1e9")
    assert oneclass.load(moved).threshold_rule == {"value": -1e9}
    for args, message in ((["--input", ref], "give one of --quantile, --contamination or --value"),
                          (["--quantile", "0.9"], "need --input"),
                          (["--input", ref, "--value", "3"], "give no --input"),
                          (["--quantile", "0.9", "--value", "3"], "give one of --quantile"),
                          (["--input", ref, "--quantile", "0.9", "--out", tmp_path], "is a directory")):
        result = run_cli("threshold", "--model", model, *args, ok=False)
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert model.read_bytes() == before  # nothing written by a refused call


def test_cli_info_says_what_a_saved_model_is(tmp_path, embedded_split):
    x = embedded_split.train.images[:120]
    det = oneclass.create("dae", "mnist", epochs=1, seed=2, device="cpu", batch_size=32, lr=1e-3)
    det.fit(x, progress=False)
    det.set_threshold(embedded_split.val.images, contamination=0.1)
    model = det.save(tmp_path / "m.oneclass")
    out = run_cli("info", "--model", model).output
    assert out.startswith(f"{model}: dae (preset mnist, seed 2)") and "Denoising autoencoder" in out
    assert "input: grey 28×28 images" in out and "scores: rec (headline)" in out
    assert "options beside the preset's: epochs=1, batch_size=32, lr=0.001" in out
    assert f"threshold: {det.threshold:.6g} (contamination 0.1)" in out
    assert "trained: 1 of 1 epochs (4 optimisation steps), kept epoch 1" in out
    assert "108 training + 12 validation samples" in out
    assert "warning" not in out
    n_weights = sum(p.numel() for net in det.networks.values() for p in net.state_dict().values())
    assert f"parameters: {n_weights:,}" in out and "saved by: oneclass" in out
    d = json.loads(run_cli("info", "--model", model, "--json").output)
    assert (d["method"], d["seed"], d["threshold"], d["parameters"]) == ("dae", 2, det.threshold, n_weights)
    assert d["options"] == {"epochs": 1, "batch_size": 32, "lr": 0.001} and d["training"]["n_train"] == 108
    # a model fitted far under its preset's steps says so whenever it is described
    small = oneclass.create("dae", "mnist", epochs=1, device="cpu").fit(x, progress=False).save(tmp_path / "s.oneclass")
    out = run_cli("info", "--model", small).output
    assert "trained: 1 of 1 epochs (1 optimisation step), kept epoch 1" in out
    assert "\nwarning: dae: 108 training images in batches of 256 make 1 optimisation step in all" in out
    svm = oneclass.create("ocsvm").fit(x).save(tmp_path / "svm.oneclass")
    out = run_cli("info", "--model", svm).output
    assert "ocsvm (preset mnist" in out and "parameters" not in out
    assert "threshold: " in out and "(quantile 0.95, of 12 held-out training images)" in out
    bare = oneclass.load(svm)
    bare.threshold = bare.threshold_rule = None  # as a video model fitted without a quantile
    assert "threshold: none set" in run_cli("info", "--model", bare.save(tmp_path / "bare.oneclass")).output
    bad = tmp_path / "bad.oneclass"
    bad.write_bytes(b"not a model")
    result = run_cli("info", "--model", bad, ok=False)
    assert result.exit_code == 1 and "not a readable oneclass model" in result.output


def test_fit_on_a_folder_takes_the_preset_its_images_call_for(tmp_path):
    """Without --preset, a folder of colour images gets the cifar10 preset (RGB 32×32), a grey one the
    mnist preset, also when its grey pictures were saved as RGB JPEGs or carry a few levels of colour
    noise (a camera's); the choice is said."""
    from oneclass.data import folder_in_colour
    rng = np.random.default_rng(0)
    colour, grey = tmp_path / "colour", tmp_path / "grey"
    colour.mkdir(), grey.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(colour / f"c{i:02d}.png")
        plain = np.repeat(rng.integers(3, 253, (40, 40, 1)), 3, axis=2)
        if i % 2:
            Image.fromarray(plain.astype(np.uint8)).save(grey / f"g{i:02d}.jpg", quality=75)
        else:
            noisy = plain + rng.integers(-3, 4, plain.shape)
            Image.fromarray(noisy.astype(np.uint8)).save(grey / f"g{i:02d}.png")
    assert folder_in_colour(colour) and not folder_in_colour(grey)
    for folder, preset, channels, side in ((colour, "cifar10", 3, 32), (grey, "mnist", 1, 28)):
        model = tmp_path / f"{folder.name}.oneclass"
        out = run_cli("fit", "--method", "dae", "--train-dir", folder, "--epochs", "1", "--device", "cpu",
                      "--option", "batch_size=16", "--quiet", "--out", model).output
        assert f"preset {preset}:" in out and f"fitted dae ({preset})" in out
        det = oneclass.load(model)
        assert det.channels == channels and np.atleast_1d(det.image_size)[0] == side
    (tmp_path / "empty").mkdir()
    with pytest.raises(oneclass.OneClassError, match="no image files"):
        folder_in_colour(tmp_path / "empty")


def test_cli_score_rejects_bad_model_and_bad_images(tmp_path):
    bad_model = tmp_path / "bad.oneclass"
    bad_model.write_bytes(b"PK\x03\x04 truncated")
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)
    result = run_cli("score", "--model", bad_model, "--input", img, ok=False)
    assert result.exit_code == 1 and "not a readable oneclass model" in result.output
    # a good model, a folder with one corrupt and one truncated image: one line naming the file
    train, _ = oneclass.datasets.embedded()
    model = tmp_path / "m.oneclass"
    oneclass.create("ocsvm").fit(train.images[:50]).save(model)
    for name, data in (("corrupt.png", b"\x89PNG\r\n\x1a\n not really"),
                       ("truncated.png", (tmp_path / "x.png").read_bytes()[:40])):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / "good.png").write_bytes(img.read_bytes())
        (folder / name).write_bytes(data)
        out = tmp_path / f"{name}.csv"
        result = run_cli("score", "--model", model, "--input", folder, "--output", out, ok=False)
        assert result.exit_code == 1 and name in result.output and "Traceback" not in result.output
        assert not out.exists()  # nothing half-written


def test_cli_evaluate_and_report(tmp_path):
    res = tmp_path / "res"
    out = run_cli("evaluate", "--method", "ocsvm", "--dataset", "mnist-embedded", "--classes", "0,1",
                  "--results", res, "--quiet").output
    assert "mean" in out and "ocsvm" in out
    assert len(collect(res)) == 2
    rep = run_cli("report", "--results", res).output
    assert "mnist-embedded" in rep


@pytest.mark.slow
def test_quickstart_demo_detects_novel_digits(tmp_path):
    out = run_cli("demo", "--digit", "0", "--epochs", "30", "--device", "cpu", "--out", tmp_path).output
    auroc = float(out.split("AUROC ")[1].split(";")[0])
    assert auroc > 0.95, out
    summary = json.loads((tmp_path / "summary.json").read_text())  # the figure the README quotes, with its setting
    assert summary["auroc"] == pytest.approx(auroc, abs=5e-5) and summary["epochs"] == 30
    assert (tmp_path / "roc.png").stat().st_size > 1000 and (tmp_path / "dae-digit0.oneclass").exists()


def test_evaluate_interrupted_between_runs_keeps_the_first_and_resumes(tmp_path, monkeypatch):
    import oneclass.evaluation as ev
    real, calls = ev.execute, {"n": 0}

    def interrupted_on_the_second_run(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "execute", interrupted_on_the_second_run)
    spec = EvalSpec("ocsvm", "mnist-embedded", classes=[4, 5])
    with pytest.raises(KeyboardInterrupt):
        evaluate(spec, None, tmp_path, progress=False, echo=lambda s: None)
    assert [p.name for p in tmp_path.glob("*/*.json")] == ["class4_seed0.json"]
    assert not list(tmp_path.rglob("*.tmp"))
    monkeypatch.setattr(ev, "execute", real)
    lines: list[str] = []
    runs = evaluate(spec, None, tmp_path, progress=False, echo=lines.append)
    assert lines[0].startswith("skip") and lines[1].startswith("run")
    assert [r["normal_class"] for r in runs] == [4, 5]


def test_evaluate_killed_while_scoring_resumes_scoring_where_it_stopped(tmp_path, monkeypatch):
    """The second attempt scores only the test batches the first did not finish, gives the
    uninterrupted run's numbers, counts the first attempt's scoring seconds, says it resumed, and
    leaves no checkpoint or kept scores behind."""
    from oneclass.models.lsa import DAEDetector
    spec = EvalSpec("dae", "mnist-embedded", classes=[0], epochs=1, device="cpu",
                    options={"score_batch_size": 256, "checkpoint_every_s": 0})
    whole = evaluate(spec, None, tmp_path / "whole", progress=False, echo=lambda s: None)[0]
    real, calls = DAEDetector.raw_scores, {"n": 0, "kill_at": 5}  # 1 validation batch, then test batches

    def raw_scores(self, x):
        calls["n"] += 1
        if calls["n"] == calls["kill_at"]:
            raise KeyboardInterrupt
        if calls["kill_at"]:
            time.sleep(0.5)  # the first attempt scores slowly: its seconds must show in the record
        return real(self, x)

    monkeypatch.setattr(DAEDetector, "raw_scores", raw_scores)
    with pytest.raises(KeyboardInterrupt):
        evaluate(spec, None, tmp_path / "res", progress=False, echo=lambda s: None)
    assert sorted(p.name for p in (tmp_path / "res").rglob("*.ckpt")) == ["class0_seed0.ckpt", "class0_seed0.scores.ckpt"]
    # what `reproduce --dry-run` says of it: the validation images' scores and three test batches
    from oneclass.evaluation import plan, under_way
    assert under_way(plan(spec, None, tmp_path / "res")[0], tmp_path / "res") == \
        f"1 epoch logged, scores of {whole['fit']['n_val'] + 3 * 256:,} images kept"
    assert under_way(plan(replace(spec, seeds=[1]), None, tmp_path / "res")[0], tmp_path / "res") is None
    log = next((tmp_path / "res").rglob("_work/class0_seed0.log.jsonl"))
    with open(log, "a") as fh:
        fh.write('{"epoch": 2, "tr')  # an epoch line cut off by a kill is not read as an epoch
    assert under_way(plan(spec, None, tmp_path / "res")[0], tmp_path / "res").startswith("1 epoch logged, ")
    calls.update(n=0, kill_at=None)
    said: list[str] = []
    run = evaluate(spec, None, tmp_path / "res", progress=False, echo=said.append)[0]
    assert "  scoring resumed: 768 of 2,000 test images were scored by an earlier attempt" in said
    assert calls["n"] == 8 - 3  # 2,000 test digits in batches of 256: three were kept
    assert run["score_resumed"]["images"] == 3 * 256
    assert run["score_seconds"] >= run["score_resumed"]["earlier_seconds"] >= 1.5
    assert run["metrics"] == whole["metrics"] and "score_resumed" not in whole
    assert not list((tmp_path / "res").rglob("*.ckpt"))


def test_output_paths_under_a_regular_file_are_one_line(tmp_path):
    """`score --output some_file/s.csv` once ended in a FileExistsError traceback."""
    from PIL import Image
    runner = CliRunner()
    (tmp_path / "some_file").write_text("x")
    r = runner.invoke(main, ["fit", "--method", "ocsvm", "--dataset", "mnist-embedded", "--normal-class", "0",
                             "--out", str(tmp_path / "some_file" / "m.oneclass")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "some_file" in r.output and "regular file" in r.output
    model = tmp_path / "m.oneclass"
    assert runner.invoke(main, ["fit", "--method", "ocsvm", "--dataset", "mnist-embedded", "--normal-class", "0",
                                "--out", str(model)]).exit_code == 0
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(images / "a.png")
    r = runner.invoke(main, ["score", "--model", str(model), "--input", str(images),
                             "--output", str(tmp_path / "some_file" / "s.csv")])
    assert r.exit_code == 1 and "Traceback" not in r.output and "some_file is a regular file" in r.output


def test_a_new_default_of_an_execution_only_setting_leaves_every_run_current():
    """The scoring batch and the layout pick kernels, not numbers (they are not part of a run's
    identity): when their defaults change, finished runs stay in the summary, while a change of
    a setting that does change the numbers still marks a run as made under other defaults."""
    from oneclass.report import stale_settings
    config = oneclass.create("dae", "mnist", epochs=3, device="cpu").config
    run = {"method": "dae", "preset": "mnist", "epochs": 3, "options": {},
           "config": {**config, "score_batch_size": 1024, "channels_last": False, "checkpoint_every_s": 5.0}}
    assert stale_settings(run) == []
    run["config"]["lr"] = config["lr"] * 10
    assert stale_settings(run) == [f"lr {config['lr'] * 10!r} → {config['lr']!r}"]
