"""`oneclass report --html`: one self-contained page, opened in headless Chromium (Debian's
`chromium`; `.ci/run` installs it): it renders its tables and every picture, raises no error."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from oneclass.cli import main

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=8000"]


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("ONECLASS_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (ONECLASS_REQUIRE_BROWSER) but not installed")
        pytest.skip("no chromium on this machine (apt install chromium)")
    return path


@pytest.mark.slow
def test_html_report_renders_tables_curves_and_images_in_a_browser(tmp_path):
    results = tmp_path / "results"
    r = CliRunner().invoke(main, ["evaluate", "--method", "dae", "--dataset", "mnist-embedded", "--classes", "0,1",
                                  "--epochs", "1", "--device", "cpu", "--results", str(results), "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["report", "--results", str(results), "--html"])
    assert r.exit_code == 0, r.output
    page = (results / "report.html").read_text()
    # self-contained: nothing fetched from anywhere
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<link" not in page
    # tables: the other runs (these are in no paper's table), the group's, its AUROC against each novel class
    assert page.count("<table>") == 3 and page.count("data:image/png;base64,") == 5  # ROC, histograms, 2 strips, training
    assert "ROC curves per class" in page and "class 1, seed 0: most and least novel" in page

    chromium = _chromium()
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'p1'}", "--dump-dom",
                          (results / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    assert 'data-images="5/5"' in body.group(0) and 'data-errors="0"' in body.group(0), body.group(0)
    assert dom.stdout.count("<table>") == 3 and "<td>0 (0)</td>" in dom.stdout
    shot = tmp_path / "page.png"
    run = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'p2'}", "--window-size=1200,2400",
                          f"--screenshot={shot}", (results / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1200) and pixels.std() > 20  # drawn, not a blank page
    assert "Uncaught" not in run.stderr and "Uncaught" not in dom.stderr
