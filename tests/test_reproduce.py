"""`oneclass reproduce`: suites declared in the package, run on a real local Ray instance (and
without Ray), failures reported while the others go on, resumption, Ctrl-C."""
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from oneclass import evaluation, reproduce as rep, runners
from oneclass.cli import main
from oneclass.errors import OneClassError
from oneclass.reproduce import Cell, reproduce

# one Ray instance at a time: under `make test`'s pytest-xdist these tests all go to one worker
pytestmark = pytest.mark.xdist_group("ray")

# CI installs the test extras (Ray among them): there a missing Ray is a failure, not a skip
if not runners.ray_available() and not os.environ.get("CI"):
    pytest.skip("Ray is not installed (pip install 'oneclass[ray]')", allow_module_level=True)

TINY = [
    Cell("tiny", "Table 1", "dae", "mnist-embedded", epochs=1, classes=(0, 1), options={"batch_size": 256}),
    # 95 % outliers need 3800 other-digit test images; the embedded set has 1800: fails in the worker
    Cell("tiny", "Table 2", "ocsvm", "mnist-embedded", protocol="outlier-fraction", classes=(0,),
         outlier_fractions=(0.95,)),
]


def _jsons(root):
    return sorted(p.relative_to(root) for p in root.glob("*/class*_seed*.json"))


@pytest.mark.slow
def test_tiny_suite_on_ray_reports_failures_and_resumes(tmp_path):
    out = reproduce("tiny", None, tmp_path, seeds=[0, 1], executor="ray", device="cpu", suite_cells=TINY,
                    progress=False, echo=lambda s: None)
    s = out.summary
    assert s.executor == "ray"
    assert len(s.done) == 4 and out.skipped == 0  # 2 classes × 2 seeds
    assert len(s.failed) == 2 and all("outliers needed" in f.error and "DataError" in f.error for f in s.failed)
    files = _jsons(tmp_path)
    assert len(files) == 4
    record = json.loads((tmp_path / files[0]).read_text())
    assert record["run_key"] == evaluation.run_key(record["run_identity"])
    assert (tmp_path / files[0]).parent.joinpath("logs").is_dir()  # the worker's epoch log came back
    # the report of the suite: mean ± std over the two seeds, per class and for the mean
    assert "Table 1: dae {\"batch_size\": 256} on mnist-embedded" in out.report and " ± " in out.report
    assert "No finished runs yet (2 to do)" in out.report  # the failing cell, one per seed
    # the suite's file: the same cells, over the headline seeds 0, 1, 2 (seed 2 not run)
    doc = (tmp_path / "reproduce-tiny.md").read_text()
    assert "2 run(s) of this cell are not finished" in doc and "No finished runs yet (3 to do)" in doc
    # cut one run's result: a second call redoes only that one (and retries the failing ones)
    (tmp_path / files[0]).unlink()
    again = reproduce("tiny", None, tmp_path, seeds=[0, 1], executor="ray", device="cpu", suite_cells=TINY,
                      progress=False, echo=lambda s: None)
    assert again.skipped == 3 and len(again.summary.done) == 1 and len(again.summary.failed) == 2
    assert _jsons(tmp_path) == files


def test_without_ray_the_same_suite_runs_in_this_process(tmp_path, monkeypatch):
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    cells = [Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(2, 3))]
    out = reproduce("tiny", None, tmp_path, seeds=[0, 1], suite_cells=cells, progress=False, echo=lambda s: None)
    assert out.summary.executor == "local" and len(out.summary.done) == 4
    with pytest.raises(Exception, match="Ray is not installed"):
        reproduce("tiny", None, tmp_path, executor="ray", suite_cells=cells, progress=False, echo=lambda s: None)
    # the same runs through `evaluate` are found finished: one cache for both commands
    lines = []
    evaluation.evaluate(evaluation.EvalSpec("ocsvm", "mnist-embedded", classes=[2, 3], seeds=[0, 1]), None,
                        tmp_path, progress=False, echo=lines.append)
    assert len(lines) == 4 and all(line.startswith("skip") for line in lines)


def test_the_suite_file_keeps_every_cell_and_every_seed_stored(tmp_path, monkeypatch):
    """Running one cell, or one more seed, rewrites that cell's section over all stored seeds and
    keeps the sections of the cells not run this time: the file is the suite, not the last call."""
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    a = Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(0, 1))
    b = Cell("tiny", "Figure 8", "ocsvm", "mnist-embedded", protocol="outlier-fraction", classes=(0,),
             outlier_fractions=(0.2,))
    quiet = dict(progress=False, echo=lambda s: None)
    reproduce("tiny", None, tmp_path, seeds=[0], suite_cells=[a, b], **quiet)
    path = tmp_path / "reproduce-tiny.md"
    first = rep._sections(path.read_text())
    assert list(first) == [a.title, b.title]
    assert "4 run(s) of this cell are not finished" in first[a.title]  # seeds 1 and 2 of two classes
    out = reproduce("tiny", None, tmp_path, seeds=[1], classes=[0], suite_cells=[a], **quiet)
    assert b.title not in out.report and "| 1 |" in out.report  # what this call ran: one seed
    second = rep._sections(path.read_text())
    assert second[b.title] == first[b.title]  # not run this time: kept as it was
    assert "3 run(s) of this cell are not finished" in second[a.title]  # class 0's seed 2, class 1's 1 and 2
    row = next(line for line in second[a.title].splitlines() if line.startswith("| 0 (0) |"))
    assert " ± " in row and row.endswith("| 0,1 |")  # class 0 now over seeds 0 and 1
    # a declared suite: its order, a line for a cell never run, its tables that cannot be run
    declared = rep.cells("alocc")
    text = rep.suite_document("alocc", declared, {declared[1].title: f"## {declared[1].title}\n\nfresh"},
                              tmp_path / "none.md")
    titles = list(rep._sections(text))
    assert titles == [c.title for c in declared] and "fresh" in text
    assert f"## {declared[0].title}\n\nPaper: {declared[0].paper}.\n\nNot run by" in text
    assert all(f"## {p['table']} — not run" in text for p in rep.pending("alocc"))


def test_ctrl_c_stops_the_workers_and_keeps_what_was_stored(tmp_path, monkeypatch):
    import ray
    stored = []
    real_store = evaluation.store

    def store_then_interrupt(results, outcome, echo=print):
        paths = real_store(results, outcome, echo)
        stored.extend(paths)
        raise KeyboardInterrupt  # the user presses Ctrl-C as the first run comes back

    monkeypatch.setattr(evaluation, "store", store_then_interrupt)
    cells = [Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(0, 1, 2, 3))]
    with pytest.raises(KeyboardInterrupt):
        reproduce("tiny", None, tmp_path, seeds=[0], executor="ray", suite_cells=cells, progress=False,
                  echo=lambda s: None)
    assert not ray.is_initialized()  # the local instance and its workers are gone
    assert len(stored) == 1 and _jsons(tmp_path) == [stored[0].relative_to(tmp_path)]
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written file
    monkeypatch.setattr(evaluation, "store", real_store)
    again = reproduce("tiny", None, tmp_path, seeds=[0], executor="local", suite_cells=cells, progress=False,
                      echo=lambda s: None)
    assert again.skipped == 1 and len(again.summary.done) == 3


def test_local_ray_workers_run_at_the_drivers_priority():
    """Found by a run of the Ctrl-C test beside two training runs: Ray's workers start at niceness
    +15, got almost no CPU, and four OC-SVM runs stood still for five minutes."""
    import ray
    runners.start_ray()
    try:
        worker_niceness = ray.get(ray.remote(lambda: os.nice(0)).remote())
    finally:
        ray.shutdown()
    assert worker_niceness == os.nice(0)


def test_declared_suites_cover_the_papers_tables():
    names = rep.suites()
    assert {"lsa", "alocc", "oled", "attn-entropy", "baselines", "all"} <= set(names)
    every = rep.cells("all")
    assert {c.method for c in rep.cells("baselines")} == {"dae", "ocsvm", "kde", "cae", "vae", "memae", "deep-svdd",
                                                              "pixel-cnn", "anogan", "ganomaly"}
    assert {c.suite for c in every} == {"lsa", "alocc", "oled", "attn-entropy"}
    # each non-ablation cell of a paper has the paper's value to set beside ours
    from oneclass.report import paper_value
    for c in every:
        if c.method in ("alocc", "ganomaly") or "(beyond the paper)" in c.table:
            # Figure 8 is a plot (its reading is in the cell's note); GANomaly has no printed row;
            # a cell beyond the paper (Deep SVDD on MNIST) has no value in it
            continue
        comp = {"lsa": "ns", "dae": "rec", "ocsvm": "score", "kde": "score", "oled": "avg", "cae": "avg",
                "attn-entropy": "a", "vae": "elbo", "memae": "rec", "deep-svdd": "svdd",
                "pixel-cnn": "nll", "anogan": "a"}[c.method]
        assert paper_value(c.method, c.dataset, c.protocol, comp, json.dumps(c.options, sort_keys=True)), c
    # every declared cell makes a valid evaluation (method, preset, options, protocol)
    from oneclass import choice
    from oneclass.registry import create, preset_for
    for c in every:
        spec = rep.spec_of(c, [0])
        for s in choice.candidate_specs(spec) if spec.choose else [spec]:  # a choice cell: each candidate
            create(s.method, s.preset or preset_for(s.method, s.dataset), epochs=s.epochs, device="cpu", **s.options)
    assert any(c.choose for c in every)
    assert [(c.table, c.method) for c in rep.cells("oled", ["1"])] == [
        ("Table 1", "oled"), ("Table 1", "oled"), ("Table 1", "vae"), ("Table 1", "memae"), ("Table 1", "memae"),
        ("Table 1", "pixel-cnn")]
    # the AE row is MemAE's networks without the memory, with the paper's value of its own
    ae = [c for c in rep.cells("oled", ["1"]) if c.options == {"memory_size": 0}]
    assert len(ae) == 1 and paper_value("memae", "mnist", "memae", "rec", '{"memory_size": 0}')["mean"] == 0.9619
    # --epochs shortens the cells that train in epochs and leaves the others alone
    shortened = {c.method: rep.spec_of(c, [0], epochs=2).epochs for c in rep.cells("lsa")}
    assert shortened == {"lsa": 2, "dae": 2, "vae": 2, "pixel-cnn": 2, "anogan": 2, "ocsvm": None, "kde": None}
    assert rep.cells("lsa", methods=["kde"])[0].method == "kde"
    assert {c.dataset for c in rep.cells("baselines", methods=["pixel-cnn"], datasets=["mnist"])} == {"mnist"}


def test_cli_reproduce_dry_run_and_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["reproduce", "nope", "--dry-run"])
    assert res.exit_code == 1 and "unknown suite 'nope'" in res.output
    res = runner.invoke(main, ["reproduce", "lsa", "--table", "9", "--dry-run"])
    assert res.exit_code == 1 and "no table '9'" in res.output and "Table 1" in res.output
    res = runner.invoke(main, ["reproduce", "lsa", "--seeds", "x", "--dry-run"])
    assert res.exit_code == 1 and "--seeds" in res.output
    res = runner.invoke(main, ["reproduce", "lsa", "--selection", "paper-style", "--dry-run"])
    assert res.exit_code == 1 and "no paper-style cell in suite 'lsa'" in res.output
    res = runner.invoke(main, ["reproduce", "lsa", "--dataset", "svhn", "--dry-run"])
    assert res.exit_code == 1 and "no cell on dataset(s) svhn" in res.output and "cifar10, mnist" in res.output
    res = runner.invoke(main, ["reproduce", "lsa", "--jobs", "0", "--dry-run"])
    assert res.exit_code == 2 and "--jobs" in res.output


def test_a_suite_run_with_an_option_makes_runs_and_a_file_of_its_own(tmp_path, monkeypatch):
    """`reproduce SUITE --option precision=bf16`: every cell whose method takes the option runs
    with it (runs of their own, beside the declared ones), the others are left out and named, and
    the suite's file is another one, so the declared suite's sections are never overwritten."""
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    cells = [Cell("tiny", "Table 1", "dae", "mnist-embedded", epochs=1, classes=(0,)),
             Cell("tiny", "Table 1", "kde", "mnist-embedded", classes=(0,))]
    unrun = Cell("tiny", "Table 2", "dae", "mnist-embedded", epochs=1, classes=(0,))  # declared, not chosen
    monkeypatch.setattr(rep, "cells", lambda *args: cells if len(args) > 1 else [*cells, unrun])
    runner = CliRunner()
    args = ["reproduce", "baselines", "--results", str(tmp_path), "--seeds", "0", "--device", "cpu", "--quiet"]
    res = runner.invoke(main, [*args, "--option", "precision=bf16", "--dry-run"], catch_exceptions=False)
    assert res.exit_code == 0 and "Table 1: kde on mnist-embedded" in res.output and "left out (no option precision)" in res.output
    res = runner.invoke(main, [*args, "--option", "precision=bf16", "--executor", "local"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (run,) = _jsons(tmp_path)
    record = json.loads((tmp_path / run).read_text())
    assert record["method"] == "dae" and record["options"] == {"precision": "bf16"}
    assert record["config"]["precision"] == "bf16" and "precision=bf16" in run.parent.name
    assert [p.name for p in tmp_path.glob("reproduce-*.md")] == ["reproduce-baselines-precision=bf16.md"]
    text = (tmp_path / "reproduce-baselines-precision=bf16.md").read_text()
    assert text.startswith("# Reproduction: baselines (precision=bf16)")
    assert "`oneclass reproduce baselines --option precision=bf16`: every cell" in text
    assert "Not run by `oneclass reproduce baselines --option precision=bf16` yet." in text  # Table 2's
    # a file an older version wrote, its "not run" line worded otherwise, gets this version's
    bf16_file = tmp_path / "reproduce-baselines-precision=bf16.md"
    bf16_file.write_text(text.replace("Not run by `oneclass reproduce baselines --option precision=bf16` yet.",
                                      "Not run by `oneclass reproduce baselines` yet."))
    runner.invoke(main, [*args, "--option", "precision=bf16", "--executor", "local"], catch_exceptions=False)
    assert bf16_file.read_text() == text
    # the declared cells: a run of their own, in the suite's own file
    res = runner.invoke(main, [*args, "--executor", "local"], catch_exceptions=False)
    assert res.exit_code == 0 and len(_jsons(tmp_path)) == 3
    assert sorted(p.name for p in tmp_path.glob("reproduce-*.md")) == [
        "reproduce-baselines-precision=bf16.md", "reproduce-baselines.md"]
    res = runner.invoke(main, [*args, "--option", "nu=0.5", "--dry-run"])
    assert res.exit_code == 1 and "no chosen cell's method takes option(s) nu" in res.output
    res = runner.invoke(main, [*args, "--option", "precision=fp16", "--executor", "local"])
    assert res.exit_code == 1 and "precision='fp16'" in res.output


def test_cells_narrowed_to_one_kind_of_epoch_choice():
    """`--selection`: the label-free cells or the paper-style ones (epoch chosen on labelled
    outliers) of a table, which `--table` alone gives together."""
    both = rep.cells("alocc", ["Figure 8"])
    assert {c.selection for c in both} == {"label-free", "paper-style"}
    paper = rep.cells("alocc", ["Figure 8"], selection="paper-style")
    assert len(paper) == 1 and paper[0].options == {"select": "val_auroc"}
    free = rep.cells("oled", ["1"], ["oled"], selection="label-free")
    assert [c.options for c in free] == [{}]
    assert all(c.selection == "paper-style" for c in rep.cells("all", selection="paper-style"))
    with pytest.raises(OneClassError, match="unknown epoch choice 'tuned'"):
        rep.cells("alocc", selection="tuned")


def test_a_dry_run_estimates_the_rest_from_the_median_of_the_finished_runs():
    """Per device, the median of training plus scoring (every variant a run scores), so one run
    resumed from its checkpoint (its last stretch only) does not pull the estimate down."""
    from types import SimpleNamespace

    from oneclass.cli import _estimate

    def task(*records):
        return SimpleNamespace(done=list(records))

    cpu = lambda train, *scores: [{"device": "cpu", "train_seconds": train, "score_seconds": s}  # noqa: E731
                                  for s in scores]
    tasks = [task(*cpu(600, 10, 20)), task(*cpu(540, 30, 30)), task(*cpu(40, 5, 5)),  # 630, 600, 50
             task({"device": "cuda:0", "train_seconds": 80, "score_seconds": 4}), task(None, None)]
    pace = rep.pace(tasks)
    assert {d: (p.seconds, p.runs) for d, p in pace.items()} == {"cpu": (600.0, 3), "cuda": (84.0, 1)}
    assert rep.duration(45) == "45 s" and rep.duration(600) == "10 min" and rep.duration(3 * 3600) == "3.0 h"
    text = _estimate(pace, [None] * 12, "cpu")
    assert text == ("; a finished run took a median of 10 min on cpu (3 runs), 84 s on cuda (1 run); "
                    "the rest about 2.0 h on cpu, one after the other")
    assert _estimate({}, [None] * 5, "cpu") == ""
    assert "the rest" not in _estimate({"cuda": pace["cuda"]}, [None] * 5, "cpu")  # no pace on this device: no guess


def test_a_run_cut_off_earlier_is_expected_to_need_only_what_it_has_not_kept():
    """A run under way resumes from its logged epochs and kept scores: what it still needs is the
    rest of its training at the median seconds an epoch, and the images not yet scored at the
    median seconds an image; nothing once scoring has begun goes to training."""
    from oneclass.cli import _estimate
    from oneclass.evaluation import Kept
    record = {"device": "cpu", "epochs": 20, "fit": {"n_val": 1000}, "train_seconds": 800.0,
              "score_seconds": 200.0, "protocol_info": {"counts": {"test": 9000}}}
    pace = rep.pace([SimpleNamespace(done=[record])])["cpu"]
    assert (pace.train_seconds, pace.score_seconds, pace.epochs, pace.images_scored) == (800.0, 200.0, 20.0, 10000.0)
    assert pace.left(None) == 1000.0
    assert pace.left(Kept(epochs=5, images=0)) == 600.0 + 200.0
    assert pace.left(Kept(epochs=20, images=2500)) == 150.0
    assert pace.left(Kept(epochs=3, images=10000)) == 0.0  # scored: nothing left to train
    assert pace.left(Kept(epochs=0, images=0)) == 1000.0  # a checkpoint of epoch 0 only
    # a method with no epochs (OC-SVM) or a record without counts: the whole median stands
    bare = rep.pace([SimpleNamespace(done=[{"device": "cpu", "epochs": "na", "train_seconds": 30.0}])])["cpu"]
    assert bare.left(Kept(epochs=0, images=0)) == 30.0
    text = _estimate({"cpu": pace}, [None, Kept(10, 0), Kept(20, 5000)], "cpu")
    assert text.endswith("the rest about 28 min on cpu, one after the other")  # 1000 + 600 + 100 s


def _crash_on_class_1(task, *args):
    """A pool worker's run body that kills its own process on class 1, as an out-of-memory kill
    or a crash in native code would: the pool breaks, the driver must go on with a fresh one."""
    if task.normal == 1:
        os._exit(3)
    return runners._execute_in_worker(task, *args)


@pytest.mark.slow
def test_local_processes_run_a_suite_jobs_at_a_time_and_outlive_a_dead_worker(tmp_path, monkeypatch):
    """Without Ray, `--jobs 2`: each run in its own spawned process, stored by the driver as it
    comes back; the same records as one after the other here; a run's own error and a worker that
    dies are each reported, and the other runs go on."""
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    quiet = dict(progress=False, echo=lambda s: None)
    out = reproduce("tiny", None, tmp_path / "pool", seeds=[0], suite_cells=TINY, jobs=2, device="cpu", **quiet)
    s = out.summary
    assert s.executor == "local, 2 processes"
    assert len(s.done) == 2 and len(s.failed) == 1 and "outliers needed" in s.failed[0].error
    files = _jsons(tmp_path / "pool")
    assert len(files) == 2 and (tmp_path / "pool" / files[0]).parent.joinpath("logs").is_dir()
    # the OC-SVM cell in processes and in this process: the same record, to the last digit
    svm = [Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(0, 2))]
    for where, jobs in (("pool", 2), ("here", 1)):
        reproduce("tiny", None, tmp_path / where, seeds=[0], suite_cells=svm, jobs=jobs, **quiet)
    auroc = {where: [json.loads(p.read_text())["metrics"] for p in sorted((tmp_path / where).glob("ocsvm*/*.json"))]
             for where in ("pool", "here")}
    assert len(auroc["pool"]) == 2 and auroc["pool"] == auroc["here"]
    # a worker dies on class 1: that run (and any then in flight) fails, a fresh pool runs the rest
    monkeypatch.setattr(runners, "_execute_in_worker", _crash_on_class_1)
    svm = [Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(1, 3, 4, 5))]
    out = reproduce("tiny", None, tmp_path / "crash", seeds=[0], suite_cells=svm, jobs=2, **quiet)
    failed = {f.task.normal: f.error for f in out.summary.failed}
    assert "a worker process died" in failed[1]
    assert {t.normal for t in out.summary.done} | set(failed) == {1, 3, 4, 5}
    assert {4, 5} <= {t.normal for t in out.summary.done}  # started after the crash, on the fresh pool
    import multiprocessing
    assert not multiprocessing.active_children()  # no worker left behind


class _PoolBrokenBetweenResults(ProcessPoolExecutor):
    """The race CI once met: a worker dies after another run's result came back, so the driver's
    next submit is refused with BrokenProcessPool before any future says so. The first pool
    refuses every submit from its third on."""
    made = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        type(self).made += 1
        self.first, self.submits = type(self).made == 1, 0

    def submit(self, *args, **kwargs):
        self.submits += 1
        if self.first and self.submits >= 3:  # broken for good, as a real pool is
            raise BrokenProcessPool("a worker died")
        return super().submit(*args, **kwargs)


@pytest.mark.slow
def test_a_pool_that_breaks_between_results_is_renewed_and_no_run_is_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    monkeypatch.setattr(runners, "ProcessPoolExecutor", _PoolBrokenBetweenResults)
    svm = [Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(1, 3, 4, 5))]
    out = reproduce("tiny", None, tmp_path, seeds=[0], suite_cells=svm, jobs=2, progress=False, echo=lambda s: None)
    assert not out.summary.failed and sorted(t.normal for t in out.summary.done) == [1, 3, 4, 5]
    assert _PoolBrokenBetweenResults.made >= 2  # a fresh pool took the refused run


def _waits_for_a_second_run(task, data_root, work_dir, *args):
    """A run that starts only once another run has started beside it (within 60 s): run one at a
    time, it fails."""
    from pathlib import Path
    marks = Path(work_dir) / "started"
    marks.mkdir(exist_ok=True)
    (marks / str(task.normal)).touch()
    deadline = time.monotonic() + 60
    while len(list(marks.iterdir())) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("no second run started beside this one")
        time.sleep(0.05)
    return runners._execute_in_worker(task, data_root, work_dir, *args)


def test_local_processes_run_jobs_runs_at_once(tmp_path, monkeypatch):
    """`--jobs 2` runs two at a time, not one after the other in a pool of two."""
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    monkeypatch.setattr(runners, "_execute_in_worker", _waits_for_a_second_run)
    cells = [Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(0, 1))]
    out = reproduce("tiny", None, tmp_path, seeds=[0], jobs=2, suite_cells=cells, progress=False, echo=lambda s: None)
    assert not out.summary.failed and len(out.summary.done) == 2


def _slow_on_class_1(task, *args):
    """A run that takes two minutes: Ctrl-C must not wait for it."""
    if task.normal == 1:
        time.sleep(120)
    return runners._execute_in_worker(task, *args)


def test_ctrl_c_ends_the_local_workers_at_once_and_keeps_what_was_stored(tmp_path, monkeypatch):
    """Ctrl-C as the first run comes back, while another worker is two minutes into its run: the
    command stops within seconds, no worker is left, the stored run stays and the rest resume."""
    import multiprocessing
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    monkeypatch.setattr(runners, "_execute_in_worker", _slow_on_class_1)
    real_store = evaluation.store

    def store_then_interrupt(results, outcome, echo=print):
        real_store(results, outcome, echo)
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "store", store_then_interrupt)
    cells = [Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(0, 1, 2, 3))]
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        reproduce("tiny", None, tmp_path, seeds=[0], jobs=2, suite_cells=cells, progress=False, echo=lambda s: None)
    assert time.perf_counter() - started < 60
    # the pool's own thread may reap a worker a moment after the command returns: allow it seconds
    gone = time.monotonic() + 15
    while multiprocessing.active_children() and time.monotonic() < gone:
        time.sleep(0.1)
    assert not multiprocessing.active_children()
    assert len(_jsons(tmp_path)) == 1 and not list(tmp_path.rglob("*.tmp"))


def test_a_time_budget_starts_only_the_runs_that_end_inside_it(tmp_path, monkeypatch):
    """The estimate is the median of the cell's finished runs on this device: with the finished
    run's time set to an hour, a 10-minute budget starts nothing, a 2-hour one starts the rest."""
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    quiet = dict(progress=False, echo=lambda s: None)
    cells = [Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(0, 1, 2))]
    reproduce("tiny", None, tmp_path, seeds=[0], classes=[0], suite_cells=cells, device="cpu", **quiet)
    (done,) = list(tmp_path.glob("ocsvm*/class0_seed0.json"))
    record = json.loads(done.read_text())
    record["train_seconds"], record["score_seconds"] = 3590.0, 10.0
    done.write_text(json.dumps(record))
    # a call narrowed to other classes still knows the cell's pace from its stored runs
    out = reproduce("tiny", None, tmp_path, seeds=[0], classes=[2], suite_cells=cells, device="cpu", time_budget=600,
                    **quiet)
    assert not out.summary.done and [t.normal for t in out.summary.deferred] == [2]
    out = reproduce("tiny", None, tmp_path, seeds=[0], suite_cells=cells, device="cpu", time_budget=600, **quiet)
    assert out.skipped == 1 and not out.summary.done and [t.normal for t in out.summary.deferred] == [1, 2]
    out = reproduce("tiny", None, tmp_path, seeds=[0], suite_cells=cells, device="cpu", time_budget=7200, **quiet)
    assert len(out.summary.done) == 2 and not out.summary.deferred
    # a budget spent: nothing starts, whatever the estimate (none here: a new cell)
    other = [Cell("tiny", "Table 1", "kde", "mnist-embedded", classes=(0,))]
    out = reproduce("tiny", None, tmp_path, seeds=[0], suite_cells=other, time_budget=0, **quiet)
    assert len(out.summary.deferred) == 1 and not out.summary.done
    budget = runners.TimeBudget(60.0)  # no estimate: starts while time is left
    assert budget.allows(out.summary.deferred[0])
    assert not runners.TimeBudget(60.0, lambda task: 61.0).allows(out.summary.deferred[0])


def test_a_time_budget_starts_a_run_cut_off_earlier_that_would_not_fit_afresh(tmp_path, monkeypatch):
    """A run killed while scoring its test images resumes from the scores it kept: a budget too
    short for a whole run (its cell's finished run set to an hour) starts that one, not a new one;
    `--dry-run` says how long it has left."""
    from oneclass.models.lsa import DAEDetector
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    quiet = dict(progress=False, echo=lambda s: None)
    cells = [Cell("tiny", "Table 1", "dae", "mnist-embedded", epochs=1, classes=(0, 1, 2),
                  options={"score_batch_size": 256, "checkpoint_every_s": 0})]
    reproduce("tiny", None, tmp_path, seeds=[0], classes=[0], suite_cells=cells, device="cpu", **quiet)
    (done,) = list(tmp_path.glob("dae*/class0_seed0.json"))
    record = json.loads(done.read_text())
    record["train_seconds"], record["score_seconds"] = 2400.0, 1200.0
    done.write_text(json.dumps(record))
    real, calls = DAEDetector.raw_scores, {"n": 0}

    def killed_in_the_fifth_batch(self, x):  # 1 validation batch, then 3 of the 8 test batches kept
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, x)

    monkeypatch.setattr(DAEDetector, "raw_scores", killed_in_the_fifth_batch)
    with pytest.raises(KeyboardInterrupt):
        reproduce("tiny", None, tmp_path, seeds=[0], classes=[1], suite_cells=cells, device="cpu", **quiet)
    monkeypatch.setattr(DAEDetector, "raw_scores", real)
    (task,) = [t for t in rep.plan_cell(rep.spec_of(cells[0], [0], [1], None, "cpu"), None, tmp_path)]
    kept = evaluation.kept_progress(task, tmp_path)
    assert kept.epochs == 1 and kept.images == record["fit"]["n_val"] + 3 * 256
    left = rep.pace(rep.plan_cell(rep.spec_of(cells[0], [0], None, None, "cpu"), None, tmp_path))["cpu"].left(kept)
    assert 0 < left < 1200 * (1 - kept.images / (record["fit"]["n_val"] + 2000)) + 1e-6
    monkeypatch.setattr(rep, "cells", lambda *args: cells)
    dry = CliRunner().invoke(main, ["reproduce", "baselines", "--results", str(tmp_path), "--dry-run",
                                    "--device", "cpu", "--seeds", "0"], catch_exceptions=False)
    assert f"(under way: 1 epoch logged, scores of {kept.images:,} images kept; about {rep.duration(left)} left)" \
        in dry.output and f"the rest about {rep.duration(left + 3600)} on cpu" in dry.output
    out = reproduce("tiny", None, tmp_path, seeds=[0], suite_cells=cells, device="cpu", time_budget=1800, **quiet)
    assert [t.normal for t in out.summary.done] == [1] and [t.normal for t in out.summary.deferred] == [2]
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_time_budget_learns_a_new_cells_pace_from_its_runs_finished_in_the_call():
    from types import SimpleNamespace
    task = lambda method, n: SimpleNamespace(name=f"{method}{n}", method=method)  # noqa: E731
    budget = runners.TimeBudget(100.0, kind=lambda t: t.method)
    assert budget.allows(task("a", 1)) and budget.expected(task("a", 1)) is None
    budget.finished(task("a", 1), 150.0)
    budget.finished(task("a", 2), 30.0)
    budget.finished(task("a", 3), 140.0)
    assert budget.expected(task("a", 4)) == 140.0 and not budget.allows(task("a", 4))  # the median
    assert budget.allows(task("b", 1))  # another kind: nothing known of it yet
    # a stored pace comes first
    assert runners.TimeBudget(100.0, lambda t: 20.0, kind=lambda t: t.method, took={"a": [150.0]}).allows(task("a", 5))


def test_a_sweep_tells_the_budget_each_runs_time(tmp_path, monkeypatch):
    """End to end: a new cell's first run (no pace stored) takes 5 s of an 8 s budget; the next
    two, expected to take as long, are not started."""
    monkeypatch.setattr(rep, "ray_available", lambda: False)
    real_execute = evaluation.execute

    def slow_execute(*args, **kwargs):
        time.sleep(5)
        return real_execute(*args, **kwargs)

    monkeypatch.setattr(evaluation, "execute", slow_execute)
    cells = [Cell("tiny", "Table 1", "ocsvm", "mnist-embedded", classes=(0, 1, 2))]
    out = reproduce("tiny", None, tmp_path, seeds=[0], suite_cells=cells, device="cpu", time_budget=8,
                    progress=False, echo=lambda s: None)
    assert [t.normal for t in out.summary.done] == [0] and [t.normal for t in out.summary.deferred] == [1, 2]
