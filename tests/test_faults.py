"""kill -9 of `expkit promote model` and `expkit run` at random points, a few times each
(benchmarks/faults.py does 20 kills of run, promote and score and records the results):
the next start cleans up, nothing is left running or temporary, the index agrees with the
files and rebuild-index restores the same runs and production pointers."""
from __future__ import annotations

import importlib.util
import random
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_SPEC = importlib.util.spec_from_file_location(
    "faults", Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py")
faults = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(faults)


def test_kill_9_of_promote_and_run_leaves_a_consistent_project(runs_dir, tmp_path, tiny_model):
    from expkit.registry import Registry
    from expkit.runs import Run

    work = tmp_path / "work"
    work.mkdir()
    run_ids = []
    for auroc in (0.8, 0.81, 0.82):
        run = Run.create("faults", runs_dir=runs_dir)
        run.start()
        shutil.copytree(tiny_model, run.dir / "model")
        run.log_metrics({"task": "binary", "holdout": {"auroc": auroc}, "above_chance": True})
        run.finish("succeeded")
        run_ids.append(run.id)
    Registry(runs_dir).promote(run_ids[0], "leads")
    rng = random.Random(1)
    results = {kind: faults.torture(kind, kills, runs_dir, work, run_ids, rng)
               for kind, kills in (("promote", 4), ("run", 2))}
    for kind, record in results.items():
        assert len(record["kills"]) >= 2 and record["next_start_exit"] == 0, (kind, record)
    problems = faults.checks(runs_dir, work, results)
    assert not any(problems.values()), problems
    assert len(Registry(runs_dir).list()) >= 2
