"""Official code run on our splits (scripts/anchors/): the harness's own parts that need no
TensorFlow, and the report that sets the official numbers beside ours without mixing them in."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import script_module
from oneclass.data import load
from oneclass.evaluation import EvalSpec, collect, collect_anchors, evaluate
from oneclass.report import report, summary

HARNESS = Path(__file__).resolve().parents[1] / "scripts" / "anchors" / "alocc_official.py"


@pytest.fixture(scope="module")
def harness():
    return script_module("scripts/anchors/alocc_official.py", "alocc_official")


class _FakeSession:
    """Stands in for a tf.Session over the official graph: D's logit of an image is its pixel sum
    (`inputs`) or minus it (`z`, through R); records every batch it is fed."""

    def __init__(self):
        self.fed = []

    def run(self, tensor, feed_dict):
        (placeholder, batch), = feed_dict.items()
        self.fed.append(len(batch))
        logits = batch.reshape(len(batch), -1).sum(1, keepdims=True)
        return logits if placeholder == "inputs" else -logits


def test_official_scores_come_back_one_per_image_in_order_from_full_batches(harness):
    model = type("M", (), {"batch_size": 4, "inputs": "inputs", "z": "z", "D_logits": "D", "D_logits_": "D_"})()
    sess = _FakeSession()
    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) / 10
    out = harness._score(sess, model, images)
    assert set(sess.fed) == {4}  # the graph's placeholders take exactly batch_size images
    sums = images.reshape(10)
    np.testing.assert_allclose(out["d_x"], 1 - 1 / (1 + np.exp(-sums)), rtol=1e-6)  # 1 − D(x), novel high
    np.testing.assert_allclose(out["d_rx"], 1 - 1 / (1 + np.exp(sums)), rtol=1e-6)
    assert out["d_x"].shape == out["d_rx"].shape == (10,)


def test_one_official_training_serves_the_standard_and_every_outlier_fraction(harness):
    train, test = load("mnist-embedded")
    splits = harness._splits(train, test, 0, 0, [0.1, 0.5])
    assert list(splits) == ["standard", "outlier-fraction-p0.1", "outlier-fraction-p0.5"]
    for name, split in splits.items():
        assert harness.torch_equal(split.train.images, splits["standard"].train.images), name
    for p in (0.1, 0.5):
        counts = splits[f"outlier-fraction-p{p:g}"].info["counts"]
        assert counts["test_novel"] / counts["test"] == pytest.approx(p, abs=0.02)


def _anchor(method: str, normal: int, seed: int, auroc: float, fraction: float) -> dict:
    m = {"auroc": auroc, "aupr": 0.5, "eer": 0.5, "f1_best": 0.25, "f1_at_tau_0.5": 0.125}
    return {"method": method, "implementation": "official", "repository": "someone/code", "commit": "0123456789abcdef",
            "changes": ["a shim"], "settings": {"epoch_choice": "last"}, "dataset": "mnist-embedded",
            "protocol": "outlier-fraction", "protocol_info": {"outlier_fraction": fraction}, "normal_class": normal,
            "seed": seed, "epochs": 40, "device": "cpu", "versions": {"tensorflow": "2.16"}, "headline": "score",
            "metrics": {"score": m}}


def test_official_runs_are_reported_beside_ours_and_never_counted_as_ours(tmp_path):
    spec = EvalSpec("ocsvm", "mnist-embedded", protocol="outlier-fraction", classes=[0], outlier_fractions=[0.1, 0.5])
    ours = {r["protocol_info"]["outlier_fraction"]: r for r in evaluate(spec, None, tmp_path, progress=False,
                                                                        echo=lambda s: None)}
    folder = tmp_path / "anchors" / "ocsvm-official__x"
    folder.mkdir(parents=True)
    for seed, auroc in ((0, 0.111), (1, 0.333)):
        (folder / f"class0_seed{seed}.json").write_text(json.dumps(_anchor("ocsvm", 0, seed, auroc, 0.5)))
    (folder / "class1_seed0.json").write_text(json.dumps({**_anchor("ocsvm", 1, 0, 0.9, 0.5),
                                                          "implementation": "ours"}))  # not an official run
    paper_style = {**_anchor("ocsvm", 0, 0, 0.9, 0.5), "settings": {"epoch_choice": "val_auroc"}}
    (tmp_path / "anchors" / "ocsvm-official_select=val_auroc__x").mkdir()
    (tmp_path / "anchors" / "ocsvm-official_select=val_auroc__x" / "class0_seed0.json").write_text(json.dumps(paper_style))
    # a class only the official code ran: the summary row compares both over the classes both ran
    (folder / "class2_seed0.json").write_text(json.dumps(_anchor("ocsvm", 2, 0, 0.999, 0.5)))
    assert len(collect(tmp_path)) == 2 and len(collect_anchors(tmp_path)) == 4
    text = report(tmp_path, write=False)
    section = text.split("## Official code beside ours", 1)[1]
    assert "someone/code @ 0123456" in section and "(1) a shim" in section
    section = section.split("official label-free (last epoch) beside ours", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "0.222 ± 0.157"  # official over its two seeds
    assert ours[0.1]["metrics"]["score"]["auroc"] != ours[0.5]["metrics"]["score"]["auroc"]
    assert cells[2] == f"{ours[0.5]['metrics']['score']['auroc']:.3f}"  # ours, same protocol and fraction
    assert cells[3] == "0.250 ± 0.000" and cells[-1] == "0,1 / 0"
    # the mean over classes weighs each class once, whatever number of seeds it has finished
    mean_row = next(line for line in section.splitlines() if line.startswith("| mean (2 classes) |"))
    assert mean_row.split("|")[2].strip() == f"{np.mean([np.mean([0.111, 0.333]), 0.999]):.3f}"  # not 0.481 pooled
    from oneclass.report import _seed_count
    runs = [{"normal_class": c, "seed": k} for c, k in ((0, 0), (0, 1), (2, 0))]
    assert _seed_count(runs) == "1–2" and _seed_count(runs[:2]) == "2"
    assert "0.111" not in text.split("## Official code beside ours", 1)[0]  # not in our own tables
    brief = summary(collect(tmp_path), collect_anchors(tmp_path)).split("official code on our splits", 1)[1]
    row = next(line for line in brief.splitlines() if line.startswith("| ocsvm |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:6] == ["mnist-embedded, outlier-fraction p = 0.5", "40", "label-free (last epoch)", "0", "2"]
    assert cells[6:8] == ["0.222", f"{ours[0.5]['metrics']['score']['auroc']:.3f}"]  # mean over the same classes
    other = next(line for line in brief.splitlines() if "paper-style (labelled selection set)" in line)
    assert "| 0.900 |" in other  # a separate row: the two epoch choices are never averaged together
    cells = [c.strip() for c in other.strip("|").split("|")]
    assert cells[7] == "–"  # no run of ours chose its epoch on labels: the label-free one is not set beside it
    # ours with a labelled epoch choice (select=val_auroc) is what a paper-style official run is set beside
    labelled = json.loads(json.dumps(ours[0.5]))
    labelled["options"] = {"select": "val_auroc"}
    labelled["metrics"]["score"]["auroc"] = 0.777
    (tmp_path / "ocsvm_select=val_auroc__x").mkdir()
    (tmp_path / "ocsvm_select=val_auroc__x" / "class0_seed0.json").write_text(json.dumps(labelled))
    brief = summary(collect(tmp_path), collect_anchors(tmp_path)).split("official code on our splits", 1)[1]
    rows = {line.split("|")[4].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in brief.splitlines() if line.startswith("| ocsvm |")}
    assert rows["paper-style (labelled selection set)"][7] == "0.777"
    assert rows["label-free (last epoch)"][7] == f"{ours[0.5]['metrics']['score']['auroc']:.3f}"


def test_selection_set_is_labelled_mixed_and_never_trained_on(harness):
    train, test = load("mnist-embedded")
    split = harness._splits(train, test, 0, 0, [0.5])["standard"]
    images, labels, info = harness._selection_set(train, split, 0, 0, n=5)
    assert images.shape == (10, 28, 28, 1) and sorted(labels) == [0] * 5 + [1] * 5
    assert labels[:5].tolist() != [0] * 5 or labels[5:].tolist() != [1] * 5  # shuffled: batches mix both
    trained = {bytes(x) for x in harness._nhwc01(split.train.images)}
    assert not any(bytes(x) in trained for x in images[labels == 0])  # normals from the held-out part
    val = {bytes(x) for x in harness._nhwc01(split.val.images)}
    assert all(bytes(x) in val for x in images[labels == 0]) and info["normal"] == info["outliers"] == 5
    again, _, _ = harness._selection_set(train, split, 0, 0, n=5)
    np.testing.assert_array_equal(images, again)  # seeded


def test_a_second_official_training_keeps_every_record_measured_before(harness, tmp_path, monkeypatch):
    """Re-running a (class, seed) to add the records it lacks (paper-style ones, which an earlier
    version of the harness did not score) writes those only: the label-free records and their log
    stay as measured, and the new records name their own training and its last epoch."""
    import argparse
    train, test = load("mnist-embedded")
    small = harness._selection_set
    monkeypatch.setattr(harness, "_selection_set", lambda *a, **k: small(*a, n=5))
    rng = np.random.default_rng(0)

    def fake_worker(script, args, w_in, w_out, work, log):
        data = np.load(w_in)
        out = {"train_seconds": 1.0, "score_seconds": 1.0, "tf_version": "2.16.2", "selected_epoch": 3,
               "selection_auroc": np.array([0.5, 0.6, 0.7])}
        for prefix in ("", "sel_"):
            for key in [k for k in data.files if k.startswith("test")] + ["val"]:
                for c in ("d_rx", "d_x"):
                    out[f"{prefix}{key}_{c}"] = rng.random(len(data[key])).astype(np.float32)
        return out, b"log of this training", 0.0

    monkeypatch.setattr(harness, "run_worker", fake_worker)
    args = argparse.Namespace(results=tmp_path, epochs=2, checkout=str(tmp_path), threads=1)
    harness._run_one(args, train, test, 0, 0, [0.5])
    last = harness._folder(tmp_path, "standard", 2, "last") / "class0_seed0.json"
    paper = harness._folder(tmp_path, "outlier-fraction-p0.5", 2, "val_auroc") / "class0_seed0.json"
    first_log = harness._folder(tmp_path, "standard", 2, "last") / "logs" / "class0_seed0.log.gz"
    assert last.exists() and paper.exists() and first_log.exists()
    assert json.loads(paper.read_text())["training_log"] == str(first_log.relative_to(tmp_path))
    kept = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "_select=" not in str(p)}
    for p in tmp_path.rglob("*.json"):
        if "_select=" in str(p):
            p.unlink()
    harness._run_one(args, train, test, 0, 0, [0.5])
    assert {p: p.read_bytes() for p in kept} == kept  # label-free records and their log untouched
    record = json.loads(paper.read_text())
    second_log = harness._folder(tmp_path, "standard", 2, "val_auroc") / "logs" / "class0_seed0.log.gz"
    assert record["training_log"] == str(second_log.relative_to(tmp_path)) and second_log.exists()
    assert record["label_free_record_from"] == "an earlier training with the same seed"
    assert 0.0 <= record["this_training_last_epoch_d_rx_auroc"] <= 1.0


def test_a_tensorflow_python_missing_a_module_is_named_before_any_training(harness, tmp_path):
    import subprocess
    import sys
    # this Python has scikit-learn, SciPy and Matplotlib but no TensorFlow: named, not a crash an hour in
    missing = harness.missing_modules(sys.executable, harness.WORKER_MODULES)
    assert "tensorflow" in missing and "sklearn" not in missing and "scipy" not in missing
    assert harness.missing_modules(str(tmp_path / "no-python"), harness.WORKER_MODULES) == list(harness.WORKER_MODULES)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "models.py").write_text("")
    run = subprocess.run([sys.executable, str(HARNESS), "--checkout", str(checkout), "--tf-python", sys.executable,
                          "--classes", "0"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "lacks tensorflow" in run.stderr and "Traceback" not in run.stderr


# a stand-in for OLED's scripts (not its code): get_data draws a split from NumPy's global state,
# train.py once per process, the test scripts once per digit in one process
_FAKE_TRAIN = '''
import numpy as np
SEED = 3
TRAIN_PERC = 0.5
OUTLIER_PERC = 0.5
INLIER = int(sys.argv[3])
def get_data():
    x = np.concatenate((np.load(TRAIN_IMG_PATH), np.load(TEST_IMG_PATH))).astype("float32") / 127.5 - 1
    y = np.concatenate((np.load(TRAIN_LABEL_PATH), np.load(TEST_LABEL_PATH)))
    inl, out = x[y == INLIER], x[y != INLIER]
    order = np.random.permutation(len(inl))
    k = int(len(inl) * TRAIN_PERC)
    val, train, test = inl[order[:2]], inl[order[2:k]], inl[order[k:]]
    ds = tf.data.Dataset.from_tensor_slices(train).batch(BATCH_SIZE)
    return (ds, np.concatenate((val, out[:1])), np.array([1, 1, 0]), np.concatenate((test, out[1:3])),
            np.r_[np.ones(len(test)), np.zeros(2)])
train_ds = get_data()
'''
_FAKE_TEST = '''
import numpy as np
SEED = 3
TRAIN_PERC = 0.5
OUTLIER_PERC = 0.5
def get_data(inlier):
    x = np.concatenate((np.load(TRAIN_IMG_PATH), np.load(TEST_IMG_PATH))).astype("float32") / 127.5 - 1
    y = np.concatenate((np.load(TRAIN_LABEL_PATH), np.load(TEST_LABEL_PATH)))
    inl, out = x[y == inlier], x[y != inlier]
    order = np.random.permutation(len(inl))
    test = inl[order[int(len(inl) * TRAIN_PERC):]]
    return np.concatenate((test, out[1:3])), np.r_[np.zeros(len(test)), np.ones(2)].astype(int)
'''


def test_the_oled_split_check_follows_each_image_through_the_scripts_own_draws(tmp_path):
    check = script_module("scripts/anchors/oled_split_check.py", "oled_split_check")
    # every index of MNIST's 70,000 images survives get_data's x / 127.5 - 1 and comes back
    ids = check._ids(check._indexed(70000, 0).astype(np.float32) / 127.5 - 1)
    assert (ids == np.arange(70000)).all()
    scripts = tmp_path / "mnist_experiment" / "scripts"
    scripts.mkdir(parents=True)
    (scripts / "train.py").write_text(_FAKE_TRAIN)
    for name in ("test.py", "test_trained.py"):
        (scripts / name).write_text(_FAKE_TEST)
    labels = np.arange(400) % 10
    out = check.check(tmp_path, labels[:300].astype(np.uint8), labels[300:].astype(np.uint8))
    first, second = out["test"][0], out["test"][1]
    # digit 0: the test script's first draw is the training process's own: its held-out images
    assert first["test_inliers"] == 20 and first["test_inliers_trained_on"] == 0
    assert first["test_inliers_held_out_by_training"] == 20 and first["test_outliers_in_selection_set"] == 0
    # digit 1 on: the same seed in another state, another split: trained-on images in the test set
    assert second["test_inliers_trained_on"] > 0
    assert second["test_inliers_trained_on"] + second["test_inliers_held_out_by_training"] \
        + second["test_inliers_in_selection_set"] == second["test_inliers"]
    (scripts / "train.py").write_text("SEED = 3\n")
    with pytest.raises(SystemExit, match="has no get_data"):
        check.check(tmp_path, labels[:300].astype(np.uint8), labels[300:].astype(np.uint8))


def test_the_oled_harness_reads_each_scores_chosen_epoch_from_the_codes_printout():
    oled = script_module("scripts/anchors/oled_official.py", "oled_official")
    epochs = [(0.2, 0.9, 0.5, 0.4), (0.7, 0.9, 0.1, 0.8), (0.7, 0.3, 0.6, 0.6)]  # rec, mask, cont, avg
    log = "".join("Epoch:  {}\nWARNING: noise\nNormal Score AUC: tf.Tensor({}, shape=(), dtype=float32)\n"
                  "Validation Score AUC: tf.Tensor({}, shape=(), dtype=float32)\n"
                  "Context Score AUC: tf.Tensor({}, shape=(), dtype=float32)\n"
                  "AVG Score AUC: tf.Tensor({}, shape=(), dtype=float32)\n".format(i + 1, *a) for i, a in enumerate(epochs))
    got = oled.selection_history(log)
    assert got["selection_auc_per_epoch"]["mask"] == [0.9, 0.9, 0.3]
    # the code saves a score's models only on a strictly higher AUC: a tie keeps the earlier epoch
    assert got["selected_epoch"] == {"rec": 2, "mask": 1, "cont": 3, "avg": 2}
    assert "tensorflow" in oled.missing_modules(__import__("sys").executable, oled.WORKER_MODULES)


def test_each_row_is_held_to_the_official_code_where_it_misses_its_paper_else_to_the_paper():
    from oneclass.report import gap_to_target
    paper = {"mean": 0.97, "per_class": [0.96, 0.98, 0.70]}
    ours = {0: 0.70, 1: 0.80}
    # the official code ran and misses the paper: ours is held to it, over the classes both ran
    assert gap_to_target(ours, paper, {0: 0.50, 1: 0.60, 2: 0.99}, 3) == "official code 0.550 on 2 of 3 classes: +0.200, met"
    assert gap_to_target({0: 0.5}, None, {0: 0.6}, 3) == "official code 0.600 on 1 of 3 classes: −0.100"  # no paper value there
    # the official code reaches its paper (within a point): the paper is the target
    assert gap_to_target(ours, paper, {0: 0.96, 1: 0.975}, 3) == "paper 0.9700 on 2 of 3 classes: −0.220"
    # no official run on these classes: the paper's per-class values over ours' classes
    assert gap_to_target({2: 0.691}, paper, {0: 0.5}, 3) == "paper 0.7000 on 1 of 3 classes: −0.009, met"
    # every class: the paper's printed mean (not the mean of its rounded per-class values)
    assert gap_to_target({0: 0.9, 1: 0.9, 2: 0.9}, paper, None, 3) == "paper 0.9700: −0.070"
    assert gap_to_target({0: 0.9}, {"mean": 0.97}, None, 3) == "–"  # a subset, and no per-class values
    assert gap_to_target(ours, None, None, 3) == "–"
    # the part-of-the-classes cases above name their count; where the dataset's class count is
    # unknown there is nothing to name it against
    assert gap_to_target({0: 0.97, 1: 0.99}, paper, None, None) == "paper 0.9700: +0.010, met"


def test_a_seed_under_way_moves_neither_a_summary_row_nor_its_gap(tmp_path):
    """A row's `ours` is the mean over the seeds that have every class; its `ours − target` is held
    to the same seeds, so a seed with one class finished (a benchmark under way) cannot pull the gap
    away from the figure printed beside it."""
    spec = EvalSpec("ocsvm", "mnist-embedded", classes=[0])
    real, = evaluate(spec, None, tmp_path, progress=False, echo=lambda s: None)
    runs = []
    for seed, auroc, classes in ((0, 0.90, range(10)), (1, 0.92, range(10)), (2, 0.10, [0])):
        for c in classes:
            r = json.loads(json.dumps(real))
            r.update(dataset="mnist", normal_class=c, seed=seed)
            r["protocol_info"]["class_counts"] = {"test": {str(k): 1 for k in range(10)}}
            r["metrics"][r["headline"]]["auroc"] = auroc
            runs.append(r)
    row = next(line for line in summary(runs).splitlines() if line.startswith("| lsa Table 1 | ocsvm | mnist"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6:8] == ["0.910 ± 0.014", "2"]
    assert cells[-1] == "paper 0.9510: −0.041"  # not −0.068, the per-class means with seed 2's class 0 in them
    # no seed with every class: no figure, and nothing to hold to a target
    nine = json.loads(json.dumps(runs[-1]))
    nine["normal_class"] = 9
    partial = [r for r in runs if r["seed"] == 2 or (r["seed"] == 0 and r["normal_class"] != 9)] + [nine]
    row = next(line for line in summary(partial).splitlines() if line.startswith("| lsa Table 1 | ocsvm | mnist"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6:8] == ["", "0"] and cells[-1] == "–"


def test_an_official_run_at_a_reduced_budget_meets_ours_at_that_budget_only(tmp_path):
    """The official code trained for fewer epochs (OLED's 400 do not fit a CPU session) is set
    beside our runs of that budget, never beside a longer training of ours, and is no target for
    the longer one; at its own full budget it is both."""
    from oneclass.report import _official_beside, _ours_beside, official_summary
    real, = evaluate(EvalSpec("ocsvm", "mnist-embedded", classes=[0]), None, tmp_path, progress=False,
                     echo=lambda s: None)
    ours = {}
    for epochs, auroc in ((10, 0.61), (100, 0.93)):
        r = json.loads(json.dumps(real))
        r["epochs"] = epochs
        r["metrics"]["score"]["auroc"] = auroc
        ours[epochs] = r
    runs = list(ours.values())

    def official(epochs: int, auroc: float) -> dict:
        return {**_anchor("ocsvm", 0, 0, auroc, None), "protocol": "standard", "protocol_info": {}, "epochs": epochs}

    short, full = official(10, 0.55), official(400, 0.80)
    assert _ours_beside(short, runs) == [ours[10]]
    assert _ours_beside(full, runs) == [ours[100]]  # the longest of ours within the official budget
    assert _ours_beside(official(5, 0.5), runs) == []
    assert _official_beside([ours[100]], [short]) is None  # a 10-epoch official run is no target for 100 of ours
    assert _official_beside([ours[10]], [short]) == {0: 0.55}
    assert _official_beside([ours[100]], [short, full]) == {0: 0.80}
    row = next(line for line in official_summary([short], runs).splitlines() if line.startswith("| ocsvm |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "10" and cells[6:8] == ["0.550", "0.610"]
    # the same epochs at another batch size are another number of steps: a row of their own
    other_batch = {**official(10, 0.70), "settings": {"epoch_choice": "last", "batch_size": 128}}
    rows = [line for line in official_summary([short, other_batch], runs).splitlines() if line.startswith("| ocsvm |")]
    assert sorted((r.split("|")[3].strip(), r.split("|")[7].strip()) for r in rows) == [("10", "0.550"),
                                                                                       ("10, batch 128", "0.700")]
