"""Every path argument of every command, given a missing path, a folder where a file is meant
(and the reverse) or a path under a regular file: a non-zero exit, one line naming the path, no
traceback, and no output file left behind."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from oneclass.cli import main


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    root = tmp_path_factory.mktemp("paths")
    (root / "file.txt").write_text("not a folder, not a model")
    (root / "folder").mkdir()
    runner = CliRunner()
    model = root / "m.oneclass"
    r = runner.invoke(main, ["fit", "--method", "ocsvm", "--dataset", "mnist-embedded", "--normal-class", "0",
                             "--out", str(model)])
    assert r.exit_code == 0, r.output
    from PIL import Image
    (root / "imgs").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(root / "imgs" / "a.png")
    return root


FIT = ["fit", "--method", "ocsvm", "--dataset", "mnist-embedded", "--normal-class", "0"]
# (command line with {root}, the text the error must contain)
CASES = [
    (FIT + ["--out", "{root}/file.txt/m.oneclass"], "file.txt"),                    # under a regular file
    (FIT + ["--out", "{root}/folder"], "folder"),                                    # a folder for a file
    (["fit", "--method", "ocsvm", "--train-dir", "{root}/missing", "--out", "{root}/x.oneclass"], "missing"),
    (["fit", "--method", "ocsvm", "--dataset", "mnist", "--normal-class", "0", "--data-root", "{root}/file.txt",
      "--out", "{root}/x.oneclass"], "file.txt"),                                    # a file for a folder
    (["fit", "--method", "ocsvm", "--dataset", "mnist", "--normal-class", "0", "--data-root", "{root}/folder",
      "--out", "{root}/x.oneclass"], "folder"),                                      # a folder without the data
    (["score", "--model", "{root}/missing.oneclass", "--input", "{root}/imgs"], "missing.oneclass"),
    (["score", "--model", "{root}/folder", "--input", "{root}/imgs"], "folder"),
    (["score", "--model", "{root}/file.txt", "--input", "{root}/imgs"], "file.txt"),  # not a model
    (["score", "--model", "{root}/m.oneclass", "--input", "{root}/missing"], "missing"),
    (["score", "--model", "{root}/m.oneclass", "--input", "{root}/folder"], "folder"),  # no images in it
    (["score", "--model", "{root}/m.oneclass", "--input", "{root}/imgs", "--output", "{root}/file.txt/s.csv"],
     "file.txt"),
    (["score", "--model", "{root}/m.oneclass", "--input", "{root}/imgs", "--output", "{root}/folder"], "folder"),
    (["evaluate", "--method", "ocsvm", "--dataset", "mnist-embedded", "--classes", "0", "--results",
      "{root}/file.txt"], "file.txt"),
    (["evaluate", "--method", "ocsvm", "--dataset", "mnist-embedded", "--classes", "0", "--results",
      "{root}/file.txt/results"], "file.txt"),
    (["report", "--results", "{root}/missing"], "missing"),
    (["report", "--results", "{root}/file.txt"], "file.txt"),
    (["reproduce", "baselines", "--method", "ocsvm", "--data-root", "{root}/file.txt", "--dry-run"], "file.txt"),
    (["reproduce", "baselines", "--method", "ocsvm", "--results", "{root}/file.txt", "--dry-run"], "file.txt"),
    (["download", "mnist", "--data-root", "{root}/file.txt/data"], "file.txt"),
]


@pytest.mark.parametrize("args, named", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_bad_path_is_one_line_naming_it(place, args, named):
    before = sorted(p.name for p in place.rglob("*"))
    r = CliRunner().invoke(main, [a.format(root=place) for a in args])
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and named in r.output, r.output
    assert sorted(p.name for p in place.rglob("*")) == before  # nothing written, nothing half-written
