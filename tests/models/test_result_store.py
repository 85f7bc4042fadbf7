"""The per-tenant result store: results in files as they arrive, a few in memory."""
from __future__ import annotations

import gc
import os
import pickle

import pytest

from expkit.models import result_store
from expkit.models.result_store import ResultStore, dumps


class Heavy:
    """Stands for a tournament result (counted while alive)."""

    def __init__(self, name):
        self.name, self.payload = name, bytes(1000)

    def __eq__(self, other):
        return isinstance(other, Heavy) and other.name == self.name


def alive(kind) -> int:
    gc.collect()
    return sum(isinstance(o, kind) for o in gc.get_objects())


def test_results_live_in_files_and_a_few_in_memory():
    store = ResultStore(global_result="the global model", cached=2)
    for i in range(5):
        store.add(f"t{i}", dumps(Heavy(f"t{i}")) if i % 2 else Heavy(f"t{i}"))  # bytes from workers, or objects
    store.add_global("tiny")
    assert alive(Heavy) == 0  # none held once written
    folder = store.folder
    assert len(list(folder.glob("*.pkl"))) == 5
    assert list(store) == ["t0", "t1", "t2", "t3", "t4", "tiny"] and len(store) == 6
    assert store["t3"] == Heavy("t3") and store["t3"] is store["t3"]  # read once, then from memory
    assert store["tiny"] == "the global model" and "tiny" in store and "nobody" not in store
    for name in ["t0", "t1", "t2", "t4"]:
        assert store[name] == Heavy(name)
    assert alive(Heavy) == 2  # the last two read
    with pytest.raises(KeyError):
        store["nobody"]

    copy = pickle.loads(pickle.dumps(store))  # a pickled store carries every result
    assert {name: copy[name] for name in copy} == {name: store[name] for name in store}
    assert copy.folder != folder
    del store, copy
    gc.collect()
    assert not folder.exists()  # the files go with the store


def test_default_memory_is_the_module_setting(monkeypatch):
    monkeypatch.setattr(result_store, "CACHED", 1)
    store = ResultStore()
    for i in range(3):
        store.add(i, Heavy(i))
        store[i]
    assert alive(Heavy) == 1


def test_folders_of_dead_processes_are_swept(tmp_path, monkeypatch):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f"{result_store.PREFIX}{int(dead.stdout)}-abc"
    alive_one = tmp_path / f"{result_store.PREFIX}{os.getppid()}-abc"  # a live process (pytest's parent)
    other = tmp_path / "expkit-tenants-notapid"
    for folder in (gone, alive_one, other):
        folder.mkdir()
        (folder / "0000000.pkl").write_bytes(b"x")
    monkeypatch.setattr(result_store.tempfile, "tempdir", str(tmp_path))
    store = ResultStore()
    store.add("t", Heavy("t"))
    assert not gone.exists() and alive_one.exists() and other.exists()
    assert store.folder.parent == tmp_path and store.folder.name.startswith(f"{result_store.PREFIX}{os.getpid()}-")


def test_the_winners_table_shows_the_best_tenant_in_bold():
    import pandas as pd

    from expkit.models.result import TenantTournamentResult

    winners = pd.DataFrame({"tenant": ["acme", "globex", "tiny"], "rows": [300, 280, 30],
                            "winner": ["lightgbm", "logistic", "ensemble"], "metric": ["auroc"] * 3,
                            "holdout": [0.81, 0.86, 0.7], "above_chance": [True, True, False],
                            "fallback": [False, False, True], "reason": [None, None, "30 labelled rows (< 50)"],
                            "budget_note": [None] * 3})
    page = TenantTournamentResult(winners, ResultStore(), None, "tenant", "converted", "binary")._repr_html_()
    assert page.count("class='num best'") == 1  # the best hold-out only (rows are not a score)
    assert "<td class='num best'>0.86</td>" in page and "1 using the global model" in page
