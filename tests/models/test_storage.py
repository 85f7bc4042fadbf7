"""storage= takes any Optuna storage: a journal file, a database URL or a storage object,
and a rerun resumes the study from each (PostgreSQL: tests/postgres/)."""
from __future__ import annotations

import optuna
import pandas as pd
import pytest

from expkit import tournament
from expkit.models.search import storage

from .test_tournament import FAST, make


@pytest.mark.parametrize("kind", ["journal", "sqlite", "object"])
def test_resume_from_each_storage(tmp_path, kind):
    spec = {"journal": tmp_path / "study.log", "sqlite": f"sqlite:///{tmp_path / 'study.db'}",
            "object": optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'obj.db'}")}[kind]
    kw = dict(families=["logistic", "knn"], storage=spec, **FAST)
    first = tournament(make("binary"), "y", n_trials=3, **kw)
    second = tournament(make("binary"), "y", n_trials=5, **kw)
    assert second.study_name == first.study_name and len(second.trials) == 5
    pd.testing.assert_series_equal(second.trials["datetime_start"].head(3), first.trials["datetime_start"],
                                   check_names=False)
    if kind == "sqlite":  # a database, not a file named "sqlite:"
        assert (tmp_path / "study.db").is_file() and not (tmp_path / "sqlite:").exists()


def test_storage_kinds(tmp_path, monkeypatch):
    assert storage(None) is None
    assert isinstance(storage(tmp_path / "a" / "study.log"), optuna.storages.JournalStorage)
    assert isinstance(storage(f"sqlite:///{tmp_path / 's.db'}"), optuna.storages.RDBStorage)
