"""`evaluate --choose`: settings chosen per class on the labelled selection set of the training
split, never on test labels; each candidate an ordinary cached run; the choice its own record."""
import json

import pytest

from oneclass import choice
from oneclass.errors import OneClassError
from oneclass.evaluation import EvalSpec, evaluate, read_result, rekey, run_key
from click.testing import CliRunner

from oneclass.cli import main

GRID = {"lr": [1e-2, 1e-3]}


def run_cli(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _spec(**kw):
    return EvalSpec("dae", "mnist-embedded", classes=[0, 1], epochs=1, device="cpu",
                    options={"batch_size": 128}, choose=GRID, **kw)


def test_each_class_keeps_the_candidate_with_the_best_selection_auroc(tmp_path):
    lines: list[str] = []
    records = evaluate(_spec(), None, tmp_path, progress=False, echo=lines.append)
    assert len(records) == 2 and sum(line.startswith("run dae") for line in lines) == 4  # 2 classes × 2 values
    for rec in records:
        cands = [(c, read_result(tmp_path / c["run"])) for c in rec["candidates"]]
        assert [c["options"] for c, _ in cands] == [{"lr": 0.01}, {"lr": 0.001}]
        for c, run in cands:  # each candidate a plain select=val_auroc run, its own file and identity
            assert run["options"] == {"batch_size": 128, "select": "val_auroc", **c["options"]}
            assert c["selection_auroc"] == -run["fit"]["best_value"] and run["run_key"] != rec["run_key"]
            assert c["test_auroc"] == run["metrics"]["rec"]["auroc"]
        best = max(cands, key=lambda cr: cr[0]["selection_auroc"])[1]
        assert rec["chosen"] == {"lr": best["config"]["lr"]}
        assert rec["metrics"] == best["metrics"] and rec["normal_class"] == best["normal_class"]
        assert rec["protocol_info"]["label_free"] is False and "selection set" in rec["protocol_info"]["choice"]
        assert rec["options"] == {"batch_size": 128, "select": "val_auroc", "choose": {"lr": [0.01, 0.001]}}
        assert "lr" not in rec["run_identity"]["config"] and rec["run_identity"]["choose"] == {"lr": [0.01, 0.001]}
        assert rec["run_key"] == run_key(rec["run_identity"])
    paths = sorted(tmp_path.glob("dae_batch_size=128_choose=lr_select=val_auroc__mnist-embedded__standard__e1__*/*.json"))
    assert [p.name for p in paths] == ["class0_seed0.json", "class1_seed0.json"]
    assert [read_result(p) for p in paths] == records
    # once more: every candidate is found finished, the choice is the same and nothing moves
    lines.clear()
    assert evaluate(_spec(), None, tmp_path, progress=False, echo=lines.append) == records
    assert lines and all(line.startswith("skip") for line in lines)
    assert rekey(tmp_path, echo=lambda s: None) == []
    # another candidate list is another choice, and reuses the candidate runs it shares
    lines.clear()
    more = EvalSpec("dae", "mnist-embedded", classes=[0], epochs=1, device="cpu", options={"batch_size": 128},
                    choose={"lr": [1e-2, 1e-3, 3e-3]})
    (rec3,) = evaluate(more, None, tmp_path, progress=False, echo=lines.append)
    assert sum(line.startswith("skip") for line in lines) == 2 and sum(line.startswith("run") for line in lines) == 1
    assert rec3["run_key"] != records[0]["run_key"]


def _fake(selection_auroc, test_auroc, lr):
    return {"run_identity": {"config": {"lr": lr, "epochs": 1}, "method": "dae"}, "run_key": str(lr),
            "protocol_info": {"label_free": False}, "headline": "rec", "train_seconds": 2.0,
            "metrics": {"rec": {"auroc": test_auroc}}, "fit": {"best_value": -selection_auroc, "best_epoch": 1},
            "config": {"lr": lr}}


@pytest.mark.parametrize("sel, chosen", [((0.9, 0.9, 0.9), 0), ((0.8, 0.9, 0.9), 1), ((0.8, 0.85, 0.95), 2)])
def test_the_best_selection_auroc_wins_and_a_tie_goes_to_the_first_combination(tmp_path, sel, chosen):
    spec = EvalSpec("dae", "mnist-embedded", choose={"lr": [1, 2, 3]})
    # test AUROCs run the other way: they must not take part
    cands = [({"lr": k + 1}, _fake(s, 1.0 - s, k + 1), tmp_path / f"r{k}.json") for k, s in enumerate(sel)]
    rec = choice.record(spec, cands, tmp_path)
    assert rec["chosen"] == {"lr": chosen + 1} and rec["metrics"]["rec"]["auroc"] == 1.0 - sel[chosen]
    assert rec["train_seconds_all_candidates"] == 6.0 and [c["run"] for c in rec["candidates"]] == ["r0.json", "r1.json", "r2.json"]


def test_combinations_in_the_order_given():
    assert choice.combinations({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


@pytest.mark.parametrize("options, grid, message", [
    ({"lr": 1e-3}, {"lr": [1e-2, 1e-3]}, "both fixed"),
    ({"select": "last"}, {"lr": [1e-2]}, "cannot run with select='last'"),
    ({}, {"lr": []}, "one or more"),
    ({}, {"lr": [1e-3, 1e-3]}, "given twice"),
    ({}, {"epochs": [1, 2]}, "cannot choose 'epochs'"),
])
def test_bad_candidate_lists_are_refused_by_name(tmp_path, options, grid, message):
    spec = EvalSpec("dae", "mnist-embedded", classes=[0], epochs=1, device="cpu", options=options, choose=grid)
    with pytest.raises(OneClassError, match=message):
        evaluate(spec, None, tmp_path, progress=False, echo=lambda s: None)
    assert not list(tmp_path.rglob("*.json"))


def test_whole_numbers_among_the_candidates_are_their_options_floats():
    # `--choose w_inf=1,0.1` is the suite's `w_inf: [1.0, 0.1]`: the same candidate runs and record
    spec = EvalSpec("attn-entropy", "mnist", choose={"w_inf": [1, 0.1]})
    assert choice.canonical_grid(spec) == {"w_inf": [1.0, 0.1]}
    assert isinstance(choice.canonical_grid(spec)["w_inf"][0], float)
    (first, _) = choice.candidate_specs(spec)
    assert isinstance(first.options["w_inf"], float)
    assert choice.choice_options(spec)["choose"] == {"w_inf": [1.0, 0.1]}


def test_cli_choose(tmp_path):
    out = run_cli("evaluate", "--method", "dae", "--dataset", "mnist-embedded", "--classes", "1", "--epochs", "1",
                  "--option", "batch_size=256", "--choose", "lr=0.01,0.001", "--device", "cpu",
                  "--results", tmp_path, "--quiet")
    assert "chose {\"lr\": " in out.output and "select" in out.output
    (path,) = tmp_path.glob("dae_choose=lr_select=val_auroc__*/class1_seed0.json")
    rec = json.loads(path.read_text())
    assert rec["options"]["choose"] == {"lr": [0.01, 0.001]}
    # the report says per class what was kept, and on what selection AUROC
    from oneclass.report import report
    best = max(c["selection_auroc"] for c in rec["candidates"])
    assert f"| lr={rec['chosen']['lr']:g} ({best:.3f}) |" in report(tmp_path, write=False)
    for bad, message in (("lr", "takes key=value1,value2"), ("lr=", "takes key=value1,value2"),
                         ("nosuch=1,2", "nosuch")):
        res = run_cli("evaluate", "--method", "dae", "--dataset", "mnist-embedded", "--classes", "1", "--epochs", "1",
                      "--choose", bad, "--results", tmp_path / "bad", ok=False)
        assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output


def test_a_choice_cell_of_a_suite_runs_its_candidates_and_reports_the_choice(tmp_path):
    from oneclass.reproduce import Cell, reproduce
    cell = Cell("tiny", "Table 1", "dae", "mnist-embedded", epochs=1, classes=(1,), options={"batch_size": 256},
                choose={"lr": [1e-2, 1e-3]}, selection="paper-style")
    # batch_size=256 is DAE's default on MNIST: not part of the name the runs are recorded under
    assert cell.record_options == {"select": "val_auroc", "choose": {"lr": [0.01, 0.001]}}
    out = reproduce("tiny", None, tmp_path, seeds=[0], executor="local", suite_cells=[cell], progress=False,
                    echo=lambda s: None)
    assert len(out.summary.done) == 2 and "No finished runs" not in out.report  # two candidates, one choice
    (path,) = tmp_path.glob("dae_choose=lr_select=val_auroc__*/class1_seed0.json")
    rec = json.loads(path.read_text())
    assert rec["options"] == cell.record_options and f"{rec['metrics']['rec']['auroc']:.3f}" in out.report
    # with seed 1 stored too, the printed report keeps to the seeds asked for; the suite's file has both
    reproduce("tiny", None, tmp_path, seeds=[1], executor="local", suite_cells=[cell], progress=False,
              echo=lambda s: None)
    again = reproduce("tiny", None, tmp_path, seeds=[0], executor="local", suite_cells=[cell], progress=False,
                      echo=lambda s: None)
    row = next(line for line in again.report.splitlines() if line.startswith("| 1 (1) |"))
    assert row.endswith("| 0 |") and " ± " not in row
    doc = (tmp_path / "reproduce-tiny.md").read_text()
    assert next(line for line in doc.splitlines() if line.startswith("| 1 (1) |")).endswith("| 0,1 |")


def test_dry_run_lists_a_choice_cells_candidates(tmp_path, monkeypatch):
    from oneclass import reproduce as rep
    cell = rep.Cell("tiny", "Table 1", "dae", "mnist-embedded", epochs=1, classes=(1, 2), choose={"lr": [1e-2, 1e-3]})
    monkeypatch.setattr(rep, "cells", lambda *a, **k: [cell])
    out = run_cli("reproduce", "tiny", "--seeds", "0", "--dry-run", "--results", tmp_path).output
    assert cell.title.endswith("epoch and lr")
    assert f"{cell.title}: 4 run(s) to do" in out  # 2 classes × 2 candidate values
    assert out.count("_lr=0.01_select=val_auroc__") == 2 and out.count("_lr=0.001_select=val_auroc__") == 2


def test_a_method_without_epochs_cannot_choose(tmp_path):
    with pytest.raises(OneClassError, match="ocsvm trains no epochs"):
        evaluate(EvalSpec("ocsvm", "mnist-embedded", classes=[0], choose={"nu": [0.1, 0.2]}), None, tmp_path,
                 progress=False, echo=lambda s: None)


def test_a_video_dataset_cannot_choose_on_its_test_clips(tmp_path):
    with pytest.raises(OneClassError, match="does not have"):
        choice.candidate_specs(EvalSpec("oled", "ped2", protocol="video", choose={"lr": [1e-3, 1e-4]}))
