"""Live progress of runs from their folders: run.json and the Optuna journal study.log."""
from __future__ import annotations

import optuna
from optuna.storages.journal import JournalFileBackend

from expkit.run import Run
from expkit.watch import Progress, Watcher, journal, progress, study_progress


def _study(path, values, metric="roc_auc", running=False):
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(storage=storage, direction="maximize", study_name="s")
    study.set_user_attr("metric", metric)
    for v in values:
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=v))
    if running:
        study.ask()  # a trial that has started and not finished
    return study


def test_progress_reads_trials_best_and_metric_from_the_journal(runs_dir):
    run = Run.create("tournament", tenant="acme", params={"budget": 20}, runs_dir=runs_dir)
    assert journal(run.dir / "study.log") is None and not (run.dir / "study.log").exists()  # never created
    run.start()
    p = progress(run.dir)
    assert p.status == "running" and p.trials == 0 and p.line().startswith("starting: kernel, data, profile")
    _study(run.dir / "study.log", [0.61, 0.74, 0.70], running=True)
    p = progress(run.dir)
    assert (p.trials, p.best, p.metric, p.budget, p.searching) == (3, 0.74, "roc_auc", 20.0, True)
    assert p.line().startswith("search ") and p.line().endswith("of 20 s, 3 trials, best roc_auc 0.74")
    done = Progress("r", "acme", run.dir / "notebook.ipynb", "running", 30.0, 20.0, 3, 0.74, "auroc", 1, 21.0)
    assert done.line() == "search done, finishing (refit, evaluation), 3 trials, best auroc 0.74"
    assert study_progress(None)["trials"] == 0


def test_watcher_names_the_notebook_then_prints_a_line_per_tenant(runs_dir):
    lines = []
    with Watcher(runs_dir, "tournament", lines.append, interval=0, bars=False, poll=3600) as watcher:
        old = Run.create("explore", tenant="acme", runs_dir=runs_dir)  # another template: not watched
        a = Run.create("tournament", tenant="acme", params={"budget": 10}, runs_dir=runs_dir)
        b = Run.create("tournament", tenant="globex", params={"budget": 10}, runs_dir=runs_dir)
        a.start()
        b.start()
        watcher.check()
        _study(a.dir / "study.log", [0.5, 0.66], running=True)
        watcher.check()
        watcher.check()  # nothing changed: no new line
        b.finish("failed")
        watcher.check()
    text = "\n".join(lines)
    assert f"[acme] writing {a.dir / 'notebook.ipynb'}" in text and f"[globex] writing {b.dir}" in text
    assert old.id not in text
    assert sum("[acme] search" in line for line in lines) == 1
    assert any(line.startswith("[acme] search") and line.endswith("2 trials, best roc_auc 0.66") for line in lines)
    assert sum(line.startswith("[globex] starting") for line in lines) == 1  # finished runs go quiet


def test_watcher_reads_a_finished_run_no_more(runs_dir, monkeypatch):
    from expkit import watch

    reads = []
    monkeypatch.setattr(watch, "progress", lambda run_dir, *a: reads.append(run_dir.name) or progress(run_dir, *a))
    with Watcher(runs_dir, "tournament", lambda line: None, interval=0, bars=False, poll=3600) as watcher:
        a = Run.create("tournament", tenant="acme", runs_dir=runs_dir)
        a.start()
        a.finish("succeeded")
        for _ in range(3):
            watcher.check()
    assert reads == [a.dir.name]
