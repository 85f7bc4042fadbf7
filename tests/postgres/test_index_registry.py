"""The run index and the registry on a real PostgreSQL server (EXPKIT_DB): concurrent
`expkit run` processes, promote/gate/rollback, concurrent promotions keeping one
production model, and rebuild-index into PostgreSQL."""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from expkit import db, runs
from expkit.cli import cli
from expkit.errors import PromotionError
from expkit.registry import Registry

from ..runs.test_registry import _model, model_run  # noqa: F401 (_model: the tiny model fixture)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPKIT = [str(Path(sys.executable).with_name("expkit"))]


def count(url: str, table: str, where: str = "") -> int:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"select count(*) from {table} {where}")).scalar()
    finally:
        engine.dispose()


@pytest.mark.slow
def test_eight_concurrent_expkit_run_processes_leave_eight_index_rows(pg_index, runs_dir, tmp_path):
    env = {**os.environ, "EXPKIT_DB": pg_index, "EXPKIT_RUNS": str(runs_dir)}
    procs = [subprocess.Popen(EXPKIT + ["run", str(FIXTURES / "small.ipynb"), "--tenant", f"t{i}"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(8)]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    failed = {f"t{i}": out for i, (p, out) in enumerate(zip(procs, outputs)) if p.returncode != 0}
    assert not failed, "\n\n".join(f"{t}:\n{out}" for t, out in failed.items())
    assert count(pg_index, "runs") == 8
    listed = runs.list(runs_dir=runs_dir)
    assert sorted(listed["tenant"]) == [f"t{i}" for i in range(8)] and set(listed["status"]) == {"succeeded"}
    assert not (runs_dir / "index.db").exists()  # nothing went to SQLite


def test_processes_indexing_the_same_run_at_once_neither_collide_nor_go_back(pg_index, runs_dir):
    """A sweep of another `expkit` process can index a run while the run's own process does
    (the folder exists a moment before its index row): both write the same primary key.
    Read-then-write without the run's lock collides on PostgreSQL (duplicate key); and a
    finished run's row is never taken back to the unfinished status read before it ended."""
    import threading

    from expkit.run import Run, RunRecord

    errors = []
    for round_ in range(8):
        run = Run.create("tiny", tenant=f"r{round_}", runs_dir=runs_dir)
        with db.session(runs_dir) as s:
            s.delete(s.get(RunRecord, run.id))  # the moment before its own process indexed it
        meta, start = run.meta, threading.Barrier(6)  # run.json as read before the run ended

        def index():
            try:
                start.wait()
                run.reindex()  # what a sweep does with a run folder
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                errors.append(exc)

        threads = [threading.Thread(target=index) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert count(pg_index, "runs") == 8
    run.start()
    run.finish("succeeded")
    run._index(meta)  # noqa: SLF001 - a sweep's late write of what run.json said before the run ended
    assert runs.list(runs_dir=runs_dir).set_index("run_id").loc[run.id, "status"] == "succeeded"


def test_promote_gate_and_rollback(pg_index, runs_dir):
    registry = Registry()
    first, worse, forced = model_run(runs_dir, 0.80), model_run(runs_dir, 0.70), model_run(runs_dir, 0.72)
    assert registry.promote(first.id, "leads", "acme")["version"] == 1
    with pytest.raises(PromotionError, match="worse than production version 1"):
        registry.promote(worse.id, "leads", "acme")
    assert registry.promote(forced.id, "leads", "acme", force=True, reason="hotfix")["version"] == 2
    back = registry.rollback("leads", "acme")
    assert (back["version"], back["run_id"]) == (3, first.id)
    assert registry.production("leads", "acme")["run_id"] == first.id
    decision = registry.promote_if_better(worse.id, "leads", "acme", why="schedule retrain")
    assert not decision["promoted"] and "worse than production version 3" in decision["reason"]
    assert count(pg_index, "model_versions", "where status = 'production'") == 1
    assert count(pg_index, "promotion_decisions") == 1
    out = CliRunner().invoke(cli, ["models", "list", "--all"])
    assert out.exit_code == 0 and out.output.count("leads") == 3


def _promote(url, runs_dir, run_id, barrier, out):
    os.environ["EXPKIT_DB"], os.environ["EXPKIT_RUNS"] = url, runs_dir
    barrier.wait()
    try:
        out.put(("ok", Registry().promote(run_id, "leads", "acme")["version"]))
    except PromotionError as exc:
        out.put(("refused", exc.message))
    except Exception as exc:  # noqa: BLE001 - an IntegrityError here is the bug this test is about
        out.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.slow
def test_concurrent_promotions_keep_one_production_model(pg_index, runs_dir):
    made = [model_run(runs_dir, 0.80) for _ in range(6)]
    Registry().list()  # the tables exist before the race
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(len(made)), ctx.Queue()
    procs = [ctx.Process(target=_promote, args=(pg_index, str(runs_dir), r.id, barrier, out)) for r in made]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert all(kind == "ok" for kind, _ in results), results
    history = Registry().list("leads").sort_values("version")
    assert list(history["version"]) == list(range(1, len(made) + 1))  # no version twice
    assert list(history["previous_version"].iloc[1:].astype(int)) == list(range(1, len(made)))  # a chain
    assert count(pg_index, "model_versions", "where status = 'production'") == 1


def test_rebuild_index_into_postgres(runs_dir, pg_url, monkeypatch):
    made = [model_run(runs_dir, 0.8, tenant=t) for t in ("a", "b", "c")]
    assert (runs_dir / "index.db").exists()
    monkeypatch.setenv("EXPKIT_DB", pg_url)
    db.dispose()
    assert runs.list(runs_dir=runs_dir).empty  # a new, empty index
    out = CliRunner().invoke(cli, ["runs", "rebuild-index"])
    assert out.exit_code == 0, out.output
    assert count(pg_url, "runs") == 3
    assert sorted(runs.list(runs_dir=runs_dir)["run_id"]) == sorted(r.id for r in made)


def test_an_unreachable_database_is_one_clear_error(runs_dir, monkeypatch):
    monkeypatch.setenv("EXPKIT_DB", "postgresql://expkit@127.0.0.1:1/expkit")
    out = CliRunner().invoke(cli, ["models", "list"])
    assert out.exit_code == 2
    assert "cannot open the index database postgresql://expkit@127.0.0.1:1/expkit ($EXPKIT_DB)" in out.output
    assert "Traceback" not in out.output
