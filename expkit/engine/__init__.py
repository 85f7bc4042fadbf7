"""Where work runs: the one executor interface, on this machine or on a Dask cluster.

Callers ask :func:`session` (or :func:`resolve`) for an :class:`Engine` and use five
things: :meth:`Engine.submit` (one call, a future), :meth:`Engine.map` (a function over
items, results in input order, a bounded number in flight), :meth:`Engine.broadcast`
(a large value sent once to every worker), :meth:`Engine.put` (one call's data, sent
once to one worker) and :meth:`Engine.cancel` / :meth:`Engine.close` (or a ``with``
block). Long calls that must stop when the caller
stops (a tenant's notebook run, a share of a study's trials) take a :class:`StopFlag`
(:meth:`Engine.stop_flag`) that they poll, and :meth:`Engine.run_each` runs many of
them, stopping them cooperatively on Ctrl-C or SIGTERM. No other expkit module knows
about processes or clusters.

==========================  ====================================================
``cluster=None``            :class:`LocalEngine`: ``n_jobs=1`` runs in this process,
                            ``n_jobs=N`` in N worker processes (loky)
``"tcp://host:8786"``       :class:`DaskEngine` on an existing Dask scheduler
a ``distributed.Client``    :class:`DaskEngine` on that client (not closed here)
``"local:N"``               :class:`DaskEngine` on a ``LocalCluster`` of N worker
                            processes on 127.0.0.1, closed with the engine
an :class:`Engine`          used as it is (not closed here)
==========================  ====================================================

``$EXPKIT_DASK_SCHEDULER`` stands in for ``cluster`` when it is not given. Engines are
registered by kind in :data:`engines` (the shape of papermill's engine registry), so a
new kind (a thread pool, another scheduler) is one ``engines.register(...)`` away.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

from ..errors import ConfigError
from .base import GRACE, Engine, StopFlag, Unfinished, WorkerLost
from .cluster import LOCAL_CLUSTER, DaskEngine
from .local import LocalEngine

#: Environment variable naming a Dask scheduler to use when ``cluster`` is not given.
SCHEDULER_ENV = "EXPKIT_DASK_SCHEDULER"


class Engines:
    """The registry of engine kinds: ``engines.register("name", factory)``; ``factory``
    takes the ``cluster`` value (or ``n_jobs`` for ``"local"``) and returns an Engine."""

    def __init__(self):
        self._kinds: dict[str, Callable[..., Engine]] = {}

    def register(self, kind: str, factory: Callable[..., Engine]) -> None:
        self._kinds[kind] = factory

    def create(self, kind: str, *args, **kwargs) -> Engine:
        try:
            factory = self._kinds[kind]
        except KeyError:
            raise ConfigError(f"no engine of kind {kind!r}", hint=f"known: {', '.join(self._kinds)}") from None
        return factory(*args, **kwargs)


#: The engine kinds expkit knows.
engines = Engines()
engines.register("local", LocalEngine)
engines.register("dask", DaskEngine)


def resolve(cluster=None, n_jobs: int = 1) -> Engine:
    """The engine for ``cluster`` (see the module docs), else ``$EXPKIT_DASK_SCHEDULER``,
    else this machine with ``n_jobs`` processes. The caller closes it (use :func:`session`
    to close only what was created)."""
    if isinstance(cluster, Engine):
        return cluster
    if cluster is None or cluster == "":
        cluster = os.environ.get(SCHEDULER_ENV) or None
    if cluster is None:
        return engines.create("local", n_jobs)
    return engines.create("dask", cluster)


def cluster_engine(cluster=None) -> Engine | None:
    """The engine of a cluster named by ``cluster`` or ``$EXPKIT_DASK_SCHEDULER`` (see
    :func:`resolve`), or None when work is to run on this machine (the caller closes it)."""
    if cluster is None or cluster == "":
        cluster = os.environ.get(SCHEDULER_ENV) or None
    return None if cluster is None else resolve(cluster)


@contextlib.contextmanager
def session(cluster=None, n_jobs: int = 1) -> Iterator[Engine]:
    """The engine of :func:`resolve` for the length of a ``with`` block. On an error,
    Ctrl-C or SIGTERM (a KeyboardInterrupt) inside the block its work is cancelled; at the
    end it is closed if it was created here (an Engine or Client passed in stays open)."""
    engine = resolve(cluster, n_jobs)
    owned = engine is not cluster
    try:
        yield engine
    except BaseException:
        engine.cancel()
        raise
    finally:
        if owned:
            engine.close()


__all__ = ["Engine", "LocalEngine", "DaskEngine", "StopFlag", "Unfinished", "WorkerLost", "engines",
           "resolve", "cluster_engine", "session", "SCHEDULER_ENV", "LOCAL_CLUSTER", "GRACE"]
