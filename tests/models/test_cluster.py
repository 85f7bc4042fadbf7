"""Tournaments on a real Dask cluster (a `dask scheduler` and two `dask worker` processes
started by the test on 127.0.0.1): one tournament per tenant, each tenant's rows sent once
and a bounded number in flight; one tournament whose trials run on both workers in one study."""
from __future__ import annotations

import gc
import os
from datetime import timedelta

import optuna
import pandas as pd
import pytest

import expkit
from expkit import engine
from expkit.errors import ConfigError
from expkit.models import result_store
from expkit.models.result import TournamentResult
from expkit.models.search import storage
from expkit.models.tournament import tournament
from expkit.schema import infer

pytestmark = pytest.mark.slow

FAST = dict(progress=False, cv=3, seed=0)


class Recording(engine.DaskEngine):
    """The test cluster, noting the rows handed to each call and the calls in flight."""

    def __init__(self, cluster):
        super().__init__(cluster)
        self.sent: list[pd.DataFrame] = []
        self.most_in_flight = 0

    def put(self, value):
        self.sent.append(value)
        self.most_in_flight = max(self.most_in_flight, sum(not f.done() for f in self._futures))
        return super().put(value)


def record_pid(study, trial):
    """A callback (run where the tenant's tournament runs): which process ran it."""
    study.set_user_attr("pid", os.getpid())


def test_per_tenant_tournaments_over_a_real_cluster(dask_cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(result_store, "CACHED", 1)
    leads = expkit.datasets.leads(n_rows=1600, n_tenants=8, seed=0)
    tiny = leads[leads["tenant"] == "acme"].head(30).assign(tenant="tiny")  # too small: the global model
    df = pd.concat([leads, tiny], ignore_index=True)
    journal = tmp_path / "studies.log"
    schema = infer(df, target="converted")  # the same types for the run on a part of the table below
    earlier = {id(o) for o in gc.get_objects() if isinstance(o, TournamentResult)}
    with Recording(dask_cluster.address) as eng:
        res = tournament(df, "converted", tenant="tenant", n_trials=1, families=["logistic"], cluster=eng,
                         storage=str(journal), callbacks=[record_pid], schema=schema, **FAST)
        assert eng.n_workers == 2
    gc.collect()  # the results went to files as they came: the client holds the global one and the last read
    held = [o for o in gc.get_objects()
            if isinstance(o, TournamentResult) and o is not res.global_result and id(o) not in earlier]
    assert len(held) <= 1 and len(list(res.results.folder.glob("*.pkl"))) == 8

    local = tournament(df[df["tenant"].isin(["acme", "tiny"])], "converted", tenant="tenant", n_trials=1,
                       families=["logistic"], n_jobs=1, schema=schema, **FAST)
    assert list(res.winners.columns) == list(local.winners.columns)
    w = res.winners.set_index("tenant")
    assert sorted(w.index) == sorted(df["tenant"].unique())
    assert w.loc["tiny", "fallback"] and not w.drop(index="tiny")["fallback"].any()
    assert res["tiny"] is res.global_result
    for name, n in df["tenant"].value_counts().items():
        assert w.loc[name, "rows"] == n
    acme = res["acme"].best_pipeline.predict_proba(leads[leads.tenant == "acme"].drop(columns=["converted",
                                                                                              "tenant"]))
    assert acme.shape[1] == 2
    assert res["acme"].holdout[1].tolist() == pytest.approx(local["acme"].holdout[1].tolist())  # same as locally

    # each tenant's rows went once, alone; the whole table once (for the global model)
    tenants_sent = [set(part["tenant"]) for part in eng.sent]
    assert sorted(len(part) for part in eng.sent) == sorted([len(df), *df["tenant"].value_counts().drop("tiny")])
    assert sorted(tuple(t) for t in tenants_sent if len(t) == 1) == sorted((t,) for t in set(leads["tenant"]))
    assert eng.most_in_flight <= 2 * 2 + 1  # bounded (two workers) (+1: the global model's call)

    # the tournaments ran in the cluster's worker processes
    pids = {optuna.load_study(study_name=r.study_name, storage=storage(str(journal))).user_attrs["pid"]
            for r in res.results.values()}
    assert pids <= set(dask_cluster.pids()) and len(pids) == 2


def test_one_tournament_runs_its_trials_on_both_workers_in_one_study(dask_cluster, tmp_path):
    df = expkit.datasets.leads(n_rows=900, n_tenants=2, seed=1).drop(columns=["tenant"])
    journal = tmp_path / "study.log"
    n_trials = 10
    res = tournament(df, "converted", n_trials=n_trials, families=["logistic", "random_forest"],
                     cluster=dask_cluster.address, storage=str(journal), **FAST)
    study = optuna.load_study(study_name=res.study_name, storage=storage(str(journal)))
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == n_trials
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2  # the study shows both workers
    assert {int(w.rsplit(":", 1)[1]) for w in workers} <= set(dask_cluster.pids())
    for w in workers:  # each worker featurized the folds once for all its trials
        assert len({t.user_attrs["folds_built"] for t in finished if t.user_attrs["worker"] == w}) == 1
    assert set(res.trials["worker"]) == workers

    local = tournament(df, "converted", n_trials=2, families=["logistic", "random_forest"], n_jobs=1, **FAST)
    assert type(res) is type(local)
    assert list(res.leaderboard.columns) == list(local.leaderboard.columns)
    assert {"logistic", "random_forest"} <= set(res.leaderboard["family"])
    assert res.metrics.keys() == local.metrics.keys()
    assert res.best_pipeline.predict_proba(df.drop(columns=["converted"]).head(5)).shape == (5, 2)

    # resumed: the same study, two more trials
    more = tournament(df, "converted", n_trials=n_trials + 2, families=["logistic", "random_forest"],
                      cluster=dask_cluster.address, storage=str(journal), **FAST)
    assert more.study_name == res.study_name and len(more.trials) == n_trials + 2


def test_a_cluster_tournament_keeps_its_budget(dask_cluster):
    df = expkit.datasets.leads(n_rows=900, n_tenants=2, seed=2).drop(columns=["tenant"])
    budget = 12.0
    r = tournament(df, "converted", budget=budget, families=["logistic", "random_forest", "knn"],
                   cluster=dask_cluster.address, **FAST)
    deadline = r.search_started + timedelta(seconds=budget)
    assert (r.trials["datetime_start"] <= deadline).all()  # no trial starts after the budget
    assert r.timings["search"] <= budget * 1.1 + 3.0
    assert len(r.trials) >= 3


def test_callbacks_cannot_follow_trials_on_a_cluster():
    with pytest.raises(ConfigError, match="callbacks"):
        tournament(pd.DataFrame({"x": range(40), "y": [0, 1] * 20}), "y", n_trials=1, cluster="local:1",
                   callbacks=[record_pid], **FAST)
