"""Shared fixtures. Tests that need ../shared/data use ``shared_data`` and skip
cleanly when it is absent; core tests use bundled or generated data only."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

from tests.dask_cluster import dask_cluster  # noqa: F401 - a real Dask cluster for the tests that ask

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]

# tests/fixtures holds notebooks that fail or kill their kernel on purpose (for
# the run-lifecycle tests); nbval must not collect them as notebooks to check.
collect_ignore_glob = ["fixtures/*"]
SHARED = Path(os.environ.get("EXPKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when it is not there."""
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED}")
    return SHARED


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    """An empty runs folder used by everything that writes runs, registry or logs."""
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("EXPKIT_RUNS", str(d))
    monkeypatch.delenv("EXPKIT_DB", raising=False)
    return d

