import os
from pathlib import Path

import pytest

import oneclass

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def embedded_data():
    return oneclass.datasets.embedded()


@pytest.fixture(scope="session")
def embedded_split(embedded_data):
    train, test = embedded_data
    return oneclass.protocols.standard(train, test, 0, seed=0)


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The real benchmark data: $ONECLASS_DATA (set by .ci/run), else ../shared/datasets."""
    root = Path(os.environ.get("ONECLASS_DATA") or SHARED)
    if not (root / "MNIST").is_dir():
        pytest.skip(f"real datasets not found at {root}")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # decoded folders and extracted archives go to a per-session cache, not ~/.cache
    monkeypatch.setenv("ONECLASS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
