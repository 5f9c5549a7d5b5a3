"""The committed results back every number shown: the tables in report.md and the READMEs'
summaries are what `oneclass report` makes of the run files, each run sits where its identity
keys it, and every file is standard JSON."""
import json
from pathlib import Path

import pytest

from oneclass.evaluation import collect, collect_anchors, record_path, run_key
from oneclass.report import MARK_END, MARK_START, report, summary

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def _reject(value):
    raise ValueError(f"non-standard JSON constant {value}")


@pytest.fixture(scope="module")
def runs():
    return collect(RESULTS)


def test_every_result_file_is_standard_json():
    for path in RESULTS.rglob("*.json"):
        json.loads(path.read_text(), parse_constant=_reject)  # no NaN / Infinity


def test_every_run_sits_where_its_identity_keys_it(runs):
    assert len(runs) > 300
    for r in runs:
        assert r["run_key"] == run_key(r["run_identity"]), r["_path"]
        assert record_path(RESULTS, r) == Path(r["_path"]), r["_path"]


def test_committed_report_is_what_report_makes_of_the_runs():
    assert (RESULTS / "report.md").read_text() == report(RESULTS, write=False), \
        "results/report.md is stale: run `oneclass report --results results --embed README.md --embed results/README.md`"


@pytest.mark.parametrize("readme", ["README.md", "results/README.md"])
def test_readme_summaries_are_generated(runs, readme):
    text = (ROOT / readme).read_text()
    block = text.split(MARK_START, 1)[1].split(MARK_END, 1)[0]
    assert block == "\n" + summary(runs, collect_anchors(RESULTS)), f"{readme}: summary block is stale (run `oneclass report --embed {readme}`)"
