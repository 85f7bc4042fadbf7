"""A run's study.log is an Optuna journal: optuna.load_study reads it and optuna-dashboard serves it."""
from __future__ import annotations

import io
import json
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend

import expkit

pytestmark = pytest.mark.slow  # a (tiny) real tournament


def _get(app, path: str):
    environ = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=path, REQUEST_METHOD="GET", QUERY_STRING="")
    status = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s) or io.BytesIO().write))
    return status[0], body


def test_study_log_opens_with_optuna_and_optuna_dashboard(tmp_path):
    log = tmp_path / "study.log"
    df = expkit.datasets.leads(n_rows=300, n_tenants=1, seed=1).drop(columns=["tenant"])
    result = expkit.tournament(df, "converted", n_trials=4, budget=60, families=["logistic"], storage=log,
                               n_jobs=1, progress=False)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(log)))
    study = optuna.load_study(study_name=result.study_name, storage=storage)
    assert len(study.trials) == len(result.trials) and study.best_value == pytest.approx(
        result.trials.loc[result.trials["state"] == "COMPLETE", "value"].max())

    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    app = optuna_dashboard.wsgi(storage)
    status, body = _get(app, "/api/studies")
    assert status.startswith("200")
    studies = json.loads(body)["study_summaries"]
    assert [s["study_name"] for s in studies] == [result.study_name]
    status, body = _get(app, f"/api/studies/{studies[0]['study_id']}")
    assert status.startswith("200") and len(json.loads(body)["trials"]) == len(result.trials)
