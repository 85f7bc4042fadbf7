"""One tournament per tenant: on this machine, or mapped over a Dask cluster.

:func:`run_tenants` plans the tenants (those too small for a tournament of their own get
the global model, flagged as a fallback), runs one tournament each and builds the
winners table. Locally the tenants share the cores (joblib). With ``cluster=`` each
tenant is one call on the engine (:mod:`expkit.engine`): its rows are sent once to the
worker that runs it (:meth:`~expkit.engine.Engine.put`, never the whole table to every
call), at most a few calls per worker are in flight (:meth:`~expkit.engine.Engine.map`).
Each tenant's result comes back as a pickle that goes straight to a file of the
:class:`~expkit.models.result_store.ResultStore` (the winners table keeps a one-line
summary), so the client holds the table and a bounded amount besides, however many
tenants there are.
"""
from __future__ import annotations

import copy
import logging

import pandas as pd

from ..errors import ConfigError, ExpkitError, TargetError
from .result import TenantTournamentResult
from .result_store import ResultStore, dumps, loads
from .train import Training, detect_task

log = logging.getLogger(__name__)

#: Tenants below these counts get the global model (fallback).
TENANT_MIN_ROWS = 50
TENANT_MIN_MINORITY = 10


def run_tenants(est, run, df, schema, target, raw_filter=None) -> TenantTournamentResult:
    """The tournaments of ``est`` (a :class:`~expkit.models.tournament.Tournament` with
    ``tenant=``) on ``df``, one per tenant, where ``est.cluster`` says; ``run`` is its
    method that runs one tournament in this process."""
    tenant = est.tenant
    if tenant not in df.columns:
        raise ConfigError(f"tenant column {tenant!r} is not in the table",
                          hint=f"columns are: {', '.join(map(str, df.columns[:30]))}")
    if target not in df.columns:
        raise TargetError(f"target column {target!r} is not in the table",
                          hint=f"columns are: {', '.join(map(str, df.columns[:30]))}")
    labelled = df[df[target].notna()]
    task = est.task if est.task != "auto" else detect_task(labelled[target])
    plan, fallback = [], {}
    for name, part in labelled.groupby(tenant, sort=True, dropna=False):
        reason = too_small(part[target], task)
        (fallback.__setitem__(name, reason) if reason else plan.append(name))
    n_runs = len(plan) + bool(fallback)
    budget = est.budget if est.budget_total is None else est.budget_total / max(n_runs, 1)
    cluster = getattr(est, "cluster", None)
    store, summaries = ResultStore(), {}

    def keep(name, summary, payload, error):  # as each tenant finishes: its file, its line
        if summary is None:
            fallback[name] = error
        else:
            store.add(name, payload)
            summaries[name] = summary

    if cluster is None:
        _local(est, run, df, schema, target, plan, budget, raw_filter, keep)
        global_result = None
    else:
        global_result = _on_cluster(est, df, schema, target, plan, fallback, budget, raw_filter, cluster, keep)
    if fallback and global_result is None:
        log.info("training the global model for %d fallback tenant(s)", len(fallback))
        global_result = run(df, schema, target, budget=budget, label="global", raw_filter=raw_filter)
    store.global_result = global_result
    if fallback:
        line = summary_of(global_result)
        for name in fallback:
            store.add_global(name)
            summaries[name] = line
    counts = labelled[tenant].value_counts(dropna=False)
    rows = [{"tenant": name, "rows": int(counts.get(name, 0)), **summaries[name],
             "fallback": name in fallback, "reason": fallback.get(name)}
            for name in sorted(summaries, key=str)]
    winners = pd.DataFrame(rows, columns=["tenant", "rows", "winner", "metric", "holdout",
                                          "above_chance", "fallback", "reason", "budget_note"])
    return TenantTournamentResult(winners=winners, results=store, global_result=global_result,
                                  tenant=tenant, target=target, task=task)


def _local(est, run, df, schema, target, plan, budget, raw_filter, keep):
    """Tenants on this machine: several at once when there are cores for them; each
    finished one goes to ``keep``."""
    from joblib import Parallel, delayed

    n_jobs = cores(est.n_jobs)
    outer = min(n_jobs, len(plan)) if len(plan) > 1 else 1
    inner = max(n_jobs // max(outer, 1), 1)

    def one(name):
        part = df[df[est.tenant] == name]
        try:
            result = run(part, schema, target, budget=budget, drop=(est.tenant,), label=str(name),
                         progress=est.progress and outer == 1, n_jobs=inner, raw_filter=raw_filter)
            return name, summary_of(result), dumps(result), None
        except ExpkitError as exc:
            return name, None, None, f"tournament failed: {exc}"

    done = (Parallel(n_jobs=outer, return_as="generator")(delayed(one)(name) for name in plan) if outer > 1
            else map(one, plan))
    for item in done:
        keep(*item)


def _on_cluster(est, df, schema, target, plan, fallback, budget, raw_filter, cluster, keep):
    """Tenants as calls on the engine of ``cluster``, each with its own rows, a bounded
    number in flight, each finished one to ``keep``; the global model (when a tenant
    needs it) is one more call, returned."""
    from .. import engine

    cfg = copy.copy(est)  # what the workers get: the settings, not the client
    cfg.cluster = None
    parts = df.groupby(est.tenant, sort=False, dropna=False).indices
    settings = dict(schema=schema, target=target, budget=budget, raw_filter=raw_filter)
    bar = _bar(est.progress, len(plan))
    with engine.session(cluster) as eng:
        log.info("%d tenant tournament(s) on %s", len(plan), eng.describe())
        glob = eng.submit(_tenant, (None, eng.put(df)), cfg, **settings) if fallback else None

        def items():
            for name in plan:
                rows = df[df[est.tenant].isna()] if _missing(name) else df.iloc[parts[name]]
                yield name, eng.put(rows)

        try:
            for item in eng.map(_tenant, items(), cfg, **settings):
                keep(*item)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        global_result = None
        if glob is not None:
            _, summary, payload, error = eng.result(glob)
            if summary is None:
                raise ExpkitError(f"the global model for the fallback tenants failed: {error}")
            global_result = loads(payload)  # the one result the client holds
    return global_result


def _tenant(item, cfg, *, schema, target, budget, raw_filter):
    """One tenant's tournament (``name`` None: the global model on every row), run where
    the engine puts it: ``(name, summary, pickled result, None)`` or ``(name, None, None,
    why it failed)``; the pickle goes to the client's result store unopened."""
    name, rows = item
    drop, label = ((), "global") if name is None else ((cfg.tenant,), str(name))
    try:
        result = Training(cfg, rows, schema, target, budget=budget, drop=drop, label=label, progress=False,
                          n_jobs=1, raw_filter=raw_filter).execute()
        return name, summary_of(result), dumps(result), None
    except ExpkitError as exc:
        return name, None, None, f"tournament failed: {exc}"


def summary_of(result) -> dict:
    """A result's line of the winners table."""
    return {"winner": result.winner, "metric": result.headline[0], "holdout": result.headline[1],
            "above_chance": result.above_chance, "budget_note": result.budget_note}


def _missing(name) -> bool:
    return not isinstance(name, (tuple, list)) and bool(pd.isna(name))


def too_small(y: pd.Series, task: str) -> str | None:
    """Why a tenant cannot have its own tournament, or None when it can."""
    if len(y) < TENANT_MIN_ROWS:
        return f"{len(y)} labelled rows (< {TENANT_MIN_ROWS})"
    if task != "regression":
        counts = y.value_counts()
        if len(counts) < 2:
            return "a single class"
        if counts.min() < TENANT_MIN_MINORITY:
            return f"{int(counts.min())} rows of the rarest class (< {TENANT_MIN_MINORITY})"
    return None


def cores(n_jobs) -> int:
    """Processes ``n_jobs`` stands for on this machine (-1: one per CPU)."""
    from joblib import effective_n_jobs
    return max(int(effective_n_jobs(n_jobs)), 1)


def _bar(enabled, total):
    if not enabled or total < 2:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="tenants", unit="tenant", leave=True)
