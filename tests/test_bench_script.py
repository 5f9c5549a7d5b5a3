"""scripts/bench.py keeps rows measured by earlier runs: a benchmark of some classes or methods
must not drop the others from the committed table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import script_module

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    return script_module("scripts/bench.py", "bench_script")


def test_pyod_rows_of_other_classes_survive_a_later_run(bench, tmp_path):
    out = tmp_path / "benchmarks-pyod-cpu"
    old = [{"method": m, "normal_class": 0, "seed": 0, "auroc": a} for m, a in [("dae", 0.98), ("pyod-autoencoder", 0.96)]]
    (tmp_path / "benchmarks-pyod-cpu.json").write_text(json.dumps({"settings": {"measured_at": "then"}, "results": old}))
    fresh = [{"method": "lsa", "normal_class": 1, "seed": 0, "auroc": 0.99, "measured_at": "now"},
             {"method": "pyod-autoencoder", "normal_class": 0, "seed": 0, "auroc": 0.5, "measured_at": "now"}]
    merged = bench._merge_rows(out, fresh, bench.PYOD_ORDER, ("normal_class", "seed", "method"))
    assert [(r["normal_class"], r["method"], r["auroc"]) for r in merged] == [
        (0, "pyod-autoencoder", 0.5), (0, "dae", 0.98), (1, "lsa", 0.99)]  # re-measured row replaced, in order
    assert merged[1]["measured_at"] == "then"  # a kept row says when it was measured


def test_throughput_rows_merge_by_method_and_preset(bench, tmp_path):
    out = tmp_path / "benchmarks-cpu"
    old = [{"method": "lsa", "preset": "mnist", "v": 1}, {"method": "dae", "preset": "cifar10", "v": 2},
           {"method": "dae", "preset": "mnist", "v": 3}]
    (tmp_path / "benchmarks-cpu.json").write_text(json.dumps({"settings": {"measured_at": "then"}, "results": old}))
    merged = bench._merge_rows(out, [{"method": "dae", "preset": "mnist", "v": 4}], bench.NEURAL)
    assert [(r["method"], r["preset"], r["v"]) for r in merged] == [
        ("dae", "cifar10", 2), ("dae", "mnist", 4), ("lsa", "mnist", 1)]


def test_every_hand_mutant_still_applies_to_the_code_once():
    """scripts/hand_mutants.json follows the code: each mutant's text stands exactly once in its
    file and changes it, and the tests it names (`first`, `only`) exist (else the script refuses to run)."""
    root = BENCH.parents[1]
    module = script_module("scripts/hand_mutants.py", "hand_mutants")
    mutants = module.load_mutants(root / "scripts" / "hand_mutants.json")
    assert len(mutants) >= 31
    for m in mutants:
        text = (root / "src" / "oneclass" / m["file"]).read_text()
        assert text.count(m["find"]) == 1 and m["find"] != m["replace"], m["id"]
        assert all((root / f).is_file() for f in m.get("first", [])), m["id"]
        assert all((root / f.split("::")[0]).is_file() for f in m.get("only", [])), m["id"]
    record = json.loads((root / "results" / "hand-mutants.json").read_text())
    assert {r["id"] for r in record["after"]["mutants"]} == {m["id"] for m in mutants}


def test_an_option_comparison_keeps_one_row_per_method_and_preset(bench, tmp_path, monkeypatch):
    """Found by a real run: `--compare-option` carried the merged table into the next row's merge,
    so every row it re-measured after the first stood twice, the old measurement beside the new."""
    out = tmp_path / "benchmarks"
    old = [{"method": m, "preset": p, "batch_size": 1, "train_off": 1.0, "train_on": 1.0, "train_gain": 1.0,
            "train_off_spread": 0.0, "train_share_of_sgemm_off": 0.1, "train_share_of_sgemm_on": 0.1,
            "score_off": 1.0, "score_on": 1.0, "score_gain": 1.0, "measured_at": "then"}
           for m, p in [("dae", "mnist"), ("memae", "mnist"), ("memae", "cifar10")]]
    (tmp_path / "benchmarks-some-option-cpu.json").write_text(
        json.dumps({"settings": {"measured_at": "then"}, "results": old}))

    def measured(method, preset, images, device, seconds, name):
        return {"method": method, "preset": preset, "batch_size": 2, "rounds": 5, "train_gflop_per_image": 0.01,
                "train_off": 2.0, "train_on": 3.0, "train_gain": 1.5, "train_off_spread": 0.1,
                "score_off": 2.0, "score_on": 3.0, "score_gain": 1.5}

    class Quiet:
        def __init__(self, device):
            pass

        def finish(self):
            return {"measured_at": "now", "device_shared": False}

    monkeypatch.setattr(bench, "bench_option", measured)
    monkeypatch.setattr(bench, "Sharing", Quiet)
    args = type("Args", (), {"compare_option": "some_option", "out": str(out), "device": "cpu", "seconds": 1.0,
                             "methods": "memae"})()
    bench.main_compare(args, None, {"host_sgemm_gflops": 100.0})
    rows = json.loads((tmp_path / "benchmarks-some-option-cpu.json").read_text())["results"]
    assert sorted((r["method"], r["preset"], r["train_on"]) for r in rows) == [
        ("dae", "mnist", 1.0), ("memae", "cifar10", 3.0), ("memae", "mnist", 3.0)]


def test_a_fast_path_check_runs_every_seed_on_both_sides_only_where_asked(tmp_path, monkeypatch):
    check = script_module("scripts/fast_path_check.py", "fast_path_check_script")
    asked = []

    def fake_evaluate(spec, data_root, results, progress=True):
        on = spec.options["channels_last"]
        asked.append((spec.method, on, tuple(spec.seeds)))
        return [{"normal_class": c, "seed": s, "headline": "rec", "options": dict(spec.options), "device": "cpu",
                 "metrics": {"rec": {"auroc": 0.5 + 0.1 * s + (0.05 if on else 0.0)}}}
                for c in spec.classes for s in spec.seeds]

    monkeypatch.setattr(check, "evaluate", fake_evaluate)
    monkeypatch.setattr("sys.argv", ["fast_path_check.py", "--methods", "dae,alocc", "--classes", "0",
                                     "--seeds", "0,1,2", "--all-seeds-on", "alocc", "--results", str(tmp_path / "cl")])
    check.main()
    assert asked == [("dae", False, (0, 1, 2)), ("dae", True, (0,)), ("alocc", False, (0, 1, 2)), ("alocc", True, (0, 1, 2))]
    rows = {r["method"]: r for r in json.loads((tmp_path / "cl.json").read_text())["rows"]}
    assert rows["dae"]["on_seed_aurocs"] == [0.55] and rows["alocc"]["on_seed_aurocs"] == pytest.approx([0.55, 0.65, 0.75])
    table = (tmp_path / "cl.md").read_text()
    assert "| **alocc mean** | | | 0.5000 | 0.5500 | +0.0500 | 0.6000 | 0.6500 |" in table  # means over every seed
    assert "| **dae mean** | | | 0.5000 | 0.5500 | +0.0500 |  |  |" in table
    assert "alocc: p = 0.57 (3 NCHW runs against 3 NHWC)" in table and "dae: p" not in table  # Welch, scipy's


def test_single_layer_and_adam_timings_write_their_tables(bench, tmp_path, monkeypatch):
    """`--gemm-layers` times each layer both ways and says which way `gemm_small_maps` takes;
    `--adam-layout` times one Adam step both ways over a method's parameters."""
    monkeypatch.setattr(bench, "GEMM_LAYERS", [(False, 4, 8, 4, 2, 1, 2), (True, 8, 4, 4, 2, 1, 2)])
    args = type("Args", (), {"out": str(tmp_path / "benchmarks"), "device": "cpu", "seconds": 0.06,
                             "methods": "memae"})()
    bench.main_gemm_layers(args)
    rows = json.loads((tmp_path / "benchmarks-gemm-layers-cpu.json").read_text())["results"]
    assert [(r["transposed"], r["map_out"], r["gemm_small_maps_takes_it"]) for r in rows] == [
        (False, 1, True), (True, 4, False)]  # one output position always; a 2×2 input with a small weight not
    assert all(r["onednn_ms"] > 0 and r["gemm_ms"] > 0 for r in rows)
    bench.main_adam_layout(args)
    rows = json.loads((tmp_path / "benchmarks-adam-layout-cpu.json").read_text())["results"]
    assert [(r["method"], r["preset"]) for r in rows] == [("memae", "mnist"), ("memae", "cifar10")]
    assert all(0 < r["nhwc_parameters"] <= r["parameters"] and r["oneclass_adam_ms"] > 0 for r in rows)
    assert "| memae | cifar10 |" in (tmp_path / "benchmarks-adam-layout-cpu.md").read_text()
