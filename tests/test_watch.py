"""`evaluate --watch-test`: each component's test AUROC logged after every epoch, for diagnosis
only; it must not change the model, the epoch choice or any metric of the run."""
import pytest
from click.testing import CliRunner

from oneclass.cli import main
from oneclass.evaluation import EvalSpec, evaluate


def _spec(**kw):
    return EvalSpec("dae", "mnist-embedded", classes=[0], epochs=3, device="cpu",
                    options={"batch_size": 128, "select": "rec"}, **kw)


def test_watching_the_test_split_logs_every_epoch_and_changes_nothing(tmp_path):
    plain = evaluate(_spec(), None, tmp_path / "plain", progress=False, echo=lambda s: None)[0]
    lines: list[str] = []
    watched = evaluate(_spec(watch_test=True), None, tmp_path / "plain", progress=False, echo=lines.append)[0]
    assert any(line.startswith("run dae") for line in lines)  # the finished run had no watch to give
    assert watched["metrics"] == plain["metrics"] and watched["fit"]["best_epoch"] == plain["fit"]["best_epoch"]
    assert watched["run_key"] == plain["run_key"]  # the same measurement, with a diagnosis beside it
    log = watched["watched_test_auroc"]
    assert log["epochs"] == [1, 2, 3] and set(log["by_epoch"]) == set(watched["metrics"])
    best = watched["fit"]["best_epoch"]
    for name, values in log["by_epoch"].items():  # one component alone: min-max is monotone
        assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values)
        assert values[best - 1] == pytest.approx(watched["metrics"][name]["auroc"], abs=1e-9)
    assert len({round(v, 9) for v in log["by_epoch"]["rec"]}) > 1  # each epoch measured, not one copied
    lines.clear()
    assert evaluate(_spec(watch_test=True), None, tmp_path / "plain", progress=False, echo=lines.append)[0] == watched
    assert lines and all(line.startswith("skip") for line in lines)


@pytest.mark.parametrize("args, words", [
    (["--method", "ocsvm", "--dataset", "mnist-embedded"], "has no epochs"),
    (["--method", "dae", "--dataset", "mnist-embedded", "--protocol", "outlier-fraction"], "several test sets"),
])
def test_watch_test_refuses_what_it_cannot_watch(tmp_path, args, words):
    result = CliRunner().invoke(main, ["evaluate", *args, "--watch-test", "--results", str(tmp_path), "--quiet"])
    assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output


def test_watching_leaves_an_adversarial_model_bit_for_bit_the_same():
    """The attention AE (BN in G and D, two optimisers): scoring the watched set between epochs in
    eval mode moves no running statistic and draws no random number."""
    import numpy as np

    import oneclass
    train, test = oneclass.datasets.embedded()
    images, labels = test.images[:120], (test.labels[:120].numpy() != 0).astype(int)
    scores = []
    for watch in (None, (images, labels)):
        det = oneclass.create("attn-entropy", "mnist", epochs=2, device="cpu", batch_size=32, seed=0)
        det.fit(train.images[:192], train.images[192:256], progress=False, **({"watch": watch} if watch else {}))
        scores.append(det.score_components(images))
    assert all(set(h["watch"]) == set(det.components) for h in det.fit_info["history"])
    for k in scores[0]:
        np.testing.assert_array_equal(scores[0][k], scores[1][k])


def test_watch_table_reads_what_a_validation_rule_would_have_kept(tmp_path):
    """`scripts/watch_table.py --by-validation rec` on a run that kept its last epoch gives the test
    AUROC that the same training under `select=rec` reports: the first epoch of lowest validation
    rec in the run's log, and the watched AUROC of that epoch."""
    from conftest import script_module
    watch_table = script_module("scripts/watch_table.py", "watch_table")
    last = EvalSpec("dae", "mnist-embedded", classes=[0], epochs=4, device="cpu", watch_test=True,
                    options={"batch_size": 128, "select": "last", "lr": 0.01})
    kept_last = evaluate(last, None, tmp_path / "last", progress=False, echo=lambda s: None)[0]
    by_rec = evaluate(EvalSpec("dae", "mnist-embedded", classes=[0], epochs=4, device="cpu",
                               options={"batch_size": 128, "select": "rec", "lr": 0.01}),
                      None, tmp_path / "rec", progress=False, echo=lambda s: None)[0]
    assert by_rec["fit"]["best_epoch"] != 4  # else the two rules would not differ here
    found = watch_table.rows(tmp_path / "last", "rec")
    assert [r[2] for r in found] == ["rec"]
    (row,) = found
    assert row[8] == by_rec["fit"]["best_epoch"]
    assert row[7] == pytest.approx(by_rec["metrics"]["rec"]["auroc"], abs=1e-9)
    assert row[3] == pytest.approx(kept_last["metrics"]["rec"]["auroc"], abs=1e-9) and row[4] == row[3]
    text = watch_table.table(found, "rec")
    assert "lowest validation rec, label-free (epoch)" in text.splitlines()[0]
    assert all(line.count("|") == 8 for line in text.splitlines())
    with pytest.raises(SystemExit, match="no validation 'nope'"):
        watch_table.rows(tmp_path / "last", "nope")


def test_a_watch_every_nth_epoch_scores_those_and_the_last_and_a_finer_one_trains_again(tmp_path):
    """`--watch-every N`: the watched AUROC after epochs N, 2N, … and the last, None between; the
    same values as a watch of every epoch at those epochs, and the run's numbers unchanged. A
    finished run serves a later watch whose epochs it holds, and is trained again for one it lacks."""
    def spec(every):
        return EvalSpec("dae", "mnist-embedded", classes=[0], epochs=5, device="cpu", watch_test=True,
                        watch_every=every, options={"batch_size": 128, "select": "rec"})

    lines: list[str] = []
    coarse = evaluate(spec(2), None, tmp_path, progress=False, echo=lines.append)[0]
    log = coarse["watched_test_auroc"]
    assert log["every"] == 2 and log["epochs"] == [1, 2, 3, 4, 5]
    assert [v is not None for v in log["by_epoch"]["rec"]] == [False, True, False, True, True]
    lines.clear()
    assert evaluate(spec(4), None, tmp_path, progress=False, echo=lines.append)[0] == coarse  # epochs 4, 5: held
    assert lines and all(line.startswith("skip") for line in lines)
    fine = evaluate(spec(1), None, tmp_path, progress=False, echo=lines.append)[0]
    assert any(line.startswith("run dae") for line in lines)  # epochs 1 and 3 were never watched
    assert fine["metrics"] == coarse["metrics"] and fine["run_key"] == coarse["run_key"]
    every = fine["watched_test_auroc"]["by_epoch"]["rec"]
    assert all(v is not None for v in every) and len({round(v, 9) for v in every}) > 1
    assert [every[i] for i in (1, 3, 4)] == [log["by_epoch"]["rec"][i] for i in (1, 3, 4)]


@pytest.mark.parametrize("args, words", [
    (["--watch-every", "2"], "give --watch-test too"),
    (["--watch-test", "--watch-every", "0"], "watch_every=0: give a whole number of epochs"),
])
def test_watch_every_refuses_a_bad_cadence(tmp_path, args, words):
    result = CliRunner().invoke(main, ["evaluate", "--method", "dae", "--dataset", "mnist-embedded", *args,
                                       "--results", str(tmp_path), "--quiet"])
    assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output
