"""Run folders, their lifecycle and the run index (no kernels: fast)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from expkit import run as run_module
from expkit import runs
from expkit.errors import ConfigError, RunError
from expkit.runs import Run
from expkit.templates import coerce, literal_parameters, nonliteral, resolve_params

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


def _finished(runs_dir, tenant="acme", status="succeeded", params=None, metrics=None):
    run = Run.create("tiny", tenant=tenant, params=params or {"n": 1}, runs_dir=runs_dir)
    run.start()
    if metrics:
        run.log_metrics(metrics)
    run.finish(status)
    return run


def test_run_id_layout_and_lifecycle(runs_dir):
    run = Run.create("tiny", tenant="acme", params={"n": 3}, runs_dir=runs_dir)
    stamp, template, tenant, rand = run.id.rsplit("-", 3)[0], *run.id.rsplit("-", 3)[1:]
    assert (template, tenant, len(rand)) == ("tiny", "acme", 6)
    assert len(stamp) == len("20240101-120000")
    meta = json.loads((run.dir / "run.json").read_text())
    assert meta["status"] == "created" and meta["params"] == {"n": 3}
    assert meta["versions"]["pandas"] == pd.__version__ and meta["pid"] == os.getpid()
    run.start()
    assert run.status == "running"
    run.log_metrics({"winner": "logreg", "metric_name": "auroc", "auroc": 0.8, "above_chance": True})
    meta = run.finish("succeeded")
    assert meta["status"] == "succeeded" and meta["duration"] >= 0
    assert meta["summary"] == {"winner": "logreg", "metric_name": "auroc", "metric": 0.8,
                               "above_chance": True}
    row = runs.list(runs_dir=runs_dir).iloc[0]
    assert (row.run_id, row.status, row.winner, row.metric) == (run.id, "succeeded", "logreg", 0.8)
    assert not list(run.dir.glob("*.tmp")) and not list(run.dir.glob(".*.tmp"))


def test_all_tenants_run_id_and_unsafe_tenants(runs_dir):
    assert Run.create("tiny", runs_dir=runs_dir).id.split("-")[3] == "all"
    for bad in ("../x", "/", "a/b", "..", " "):
        with pytest.raises(ConfigError, match="escape the runs folder"):
            Run.create("tiny", tenant=bad, runs_dir=runs_dir)
    assert Run.create("tiny", tenant="Acme Corp", runs_dir=runs_dir).id.split("-")[3] == "Acme"


def test_run_methods_save_figure_table_and_params(runs_dir):
    import matplotlib.pyplot as plt

    run = Run.create("tiny", runs_dir=runs_dir)
    run.log_params(alpha=0.1)
    run.log_metrics(auroc=0.7)
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    assert run.save_figure("roc curve", fig).read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)
    run.save_table("leaderboard", pd.DataFrame({"family": ["a"], "score": [1.0]}))
    assert run.params == {"alpha": 0.1}
    assert run.metrics == {"auroc": 0.7}
    assert (run.dir / "figures" / "roc-curve.png").is_file()
    assert pd.read_csv(run.dir / "leaderboard.csv").family.tolist() == ["a"]


def test_save_model_keeps_logged_metrics(runs_dir):
    class Result:  # stands in for a TournamentResult: save(dir) writes metrics.json
        def save(self, directory):
            (directory / "model").mkdir()
            (directory / "metrics.json").write_text(json.dumps({"winner": "gbm", "auroc": 0.9}))

    run = Run.create("tiny", runs_dir=runs_dir)
    run.log_metrics(rows=100)
    assert run.save_model(Result()) == run.dir / "model"
    assert run.metrics == {"rows": 100, "winner": "gbm", "auroc": 0.9}
    assert run.meta["summary"]["winner"] == "gbm"


def test_current_attaches_to_injected_run_and_creates_interactive_one(runs_dir, monkeypatch):
    made = Run.create("tiny", runs_dir=runs_dir)
    assert Run.current(str(made.dir)).id == made.id
    monkeypatch.setattr(run_module, "_current", None)
    interactive = Run.current()
    assert interactive.dir.parent == runs_dir and interactive.status == "running"
    assert Run.current() is interactive
    interactive.finish()
    assert interactive.meta["kind"] == "interactive" and interactive.status == "succeeded"


def test_dead_process_run_is_listed_as_interrupted(runs_dir):
    run = Run.create("tiny", runs_dir=runs_dir)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run.update(status="running", pid=proc.pid)
    table = runs.list(runs_dir=runs_dir)
    assert table.status.tolist() == ["interrupted"]
    assert run.status == "interrupted" and "ended" in run.meta["error"]["message"]


def test_list_filters(runs_dir):
    a = _finished(runs_dir, "acme")
    _finished(runs_dir, "globex", status="failed")
    assert runs.list(tenant="acme", runs_dir=runs_dir).run_id.tolist() == [a.id]
    assert runs.list(status="failed", runs_dir=runs_dir).tenant.tolist() == ["globex"]
    assert len(runs.list(template="tiny", since="1h", runs_dir=runs_dir)) == 2
    assert runs.list(since="2999-01-01", runs_dir=runs_dir).empty
    with pytest.raises(ConfigError, match="since"):
        runs.list(since="yesterday-ish", runs_dir=runs_dir)
    with pytest.raises(ConfigError, match="status"):
        runs.list(status="done", runs_dir=runs_dir)


def test_list_says_which_runs_folder_it_read(runs_dir, tmp_path, monkeypatch):
    _finished(runs_dir, "acme")
    table = runs.list()
    assert isinstance(table, runs.RunTable) and table.runs_dir == runs_dir
    line = f"runs folder {runs_dir} ($EXPKIT_RUNS)"
    assert table.folder_line() == line and repr(table).startswith(line)
    assert line in table._repr_html_() and line in repr(table[["tenant", "status"]])  # kept by slices
    empty = runs.list(runs_dir=tmp_path / "none")
    assert empty.empty and empty.folder_line() == f"runs folder {tmp_path / 'none'} (given)"


@pytest.fixture
def scored_runs(runs_dir):
    """Three runs with hold-out metrics and parameters, as a tournament template leaves them."""
    made = {}
    for tenant, budget, auroc, family in (("acme", 30, 0.81, "logistic"), ("globex", 60, 0.77, "forest"),
                                          ("initech", 60, None, None)):
        metrics = {"winner": family, "metric_name": "auroc",
                   "holdout": {"auroc": auroc, "brier": 0.2}, "calibration": {"after": {"brier": 0.19}},
                   "validation": {"sigmoid": {"log_loss": 0.5}, "isotonic": {"log_loss": 0.6}}} \
            if auroc else {}
        made[tenant] = _finished(runs_dir, tenant, params={"budget": budget, "families": ["a", "b"]},
                                 metrics=metrics)
    return made


def test_list_where_on_metrics_and_parameters(scored_runs, runs_dir):
    def tenants(**kw):
        return runs.list(runs_dir=runs_dir, **kw)["tenant"].tolist()

    assert tenants(where="auroc > 0.8") == ["acme"]            # auroc: the hold-out AUROC
    assert tenants(where="auroc >= 0.77 and budget = 60") == ["globex"]
    assert sorted(tenants(where="budget != 30")) == ["globex", "initech"]
    assert tenants(where="tenant ~ GLO") == ["globex"]          # ~: contains, any case
    assert tenants(where="metrics.holdout.brier < 0.3", sort="tenant") == ["acme", "globex"]
    assert tenants(where="calibration.after.brier = 0.19", sort="-tenant") == ["globex", "acme"]
    assert tenants(where="AUROC > 0.5 AND winner = logistic") == ["acme"]  # names in any case
    table = runs.list(runs_dir=runs_dir, where="auroc > 0.7", sort="budget desc")
    assert list(table.columns[-2:]) == ["auroc", "budget"]     # the columns named are shown
    assert table["budget"].tolist() == [60, 30]
    for bad, message in (("auroc >> 1", "cannot read the condition"), ("nope > 1", "no column, metric"),
                         ("log_loss < 1", "'log_loss' is ambiguous"), ("tenant > 3", "is not a number")):
        with pytest.raises(ConfigError, match=message):
            runs.list(runs_dir=runs_dir, where=bad)


def test_list_sort_puts_missing_values_last(scored_runs, runs_dir):
    up = runs.list(runs_dir=runs_dir, sort="auroc asc")
    assert up["tenant"].tolist() == ["globex", "acme", "initech"]
    down = runs.list(runs_dir=runs_dir, sort="-auroc")
    assert down["tenant"].tolist() == ["acme", "globex", "initech"]
    wide = runs.list(runs_dir=runs_dir, fields=True)
    assert {"params.budget", "metrics.holdout.auroc", "metrics.calibration.after.brier"} <= set(wide.columns)


def test_holdout_scores_of_runs_that_saved_them(scored_runs, runs_dir):
    acme, globex = scored_runs["acme"], scored_runs["globex"]
    pd.DataFrame({"y": [0, 1, 0, 1], "score": [0.1, 0.8, 0.3, 0.6]}).to_csv(acme.dir / runs.HOLDOUT_FILE,
                                                                             index=False)
    curves = runs.holdout_scores([acme.id, globex.id], runs_dir)
    assert list(curves) == [f"acme {acme.id[-6:]}"] and list(curves[f"acme {acme.id[-6:]}"]["y"]) == [0, 1, 0, 1]


def test_get_show_and_unknown_run(runs_dir):
    run = _finished(runs_dir, metrics={"auroc": 0.6})
    assert runs.get(run.id[:-2], runs_dir).id == run.id  # unique prefix
    info = runs.show(run.id, runs_dir)
    assert info["metrics"] == {"auroc": 0.6} and "run.json" in info["files"]
    for bad in ("nope", "../x", "", ".."):
        with pytest.raises(RunError, match="no run"):
            runs.get(bad, runs_dir)


def test_compare_marks_differences(runs_dir):
    a = _finished(runs_dir, params={"n": 1, "seed": 0}, metrics={"auroc": 0.7})
    b = _finished(runs_dir, params={"n": 2, "seed": 0}, metrics={"auroc": 0.7})
    table = runs.compare([a.id, b.id], runs_dir)
    assert table.loc["param.n", "differs"] and not table.loc["param.seed", "differs"]
    assert not table.loc["metric.auroc", "differs"]
    assert table.loc["param.n", a.id] == 1 and table.loc["param.n", b.id] == 2
    with pytest.raises(ConfigError):
        runs.compare([a.id], runs_dir)


def test_compare_puts_parameters_and_headline_metrics_before_details(runs_dir):
    members = {"members": {"lightgbm #28": {"weight": 0.4, "num_leaves": 4}}}
    a = _finished(runs_dir, params={"budget": 30}, metrics={"params": members, "auroc": 0.81, "winner": "ensemble",
                                                            "holdout": {"auroc": 0.80}})
    b = _finished(runs_dir, params={"budget": 40}, metrics={"params": {}, "auroc": 0.83, "winner": "logistic",
                                                            "holdout": {"auroc": 0.82}})
    order = list(runs.compare([a.id, b.id], runs_dir).index)
    assert order.index("tenant") < order.index("param.budget") < order.index("metric.auroc")
    assert order.index("metric.winner") < order.index("duration") < order.index("metric.params.members.lightgbm #28.weight")
    assert order.index("metric.holdout.auroc") < order.index("duration")  # a tournament's hold-out is a headline


def test_rebuild_index_from_folders(runs_dir):
    runs_ = [_finished(runs_dir, t) for t in ("acme", "globex")]
    (runs_dir / "index.db").unlink()
    for extra in ("index.db-wal", "index.db-shm"):
        (runs_dir / extra).unlink(missing_ok=True)
    from expkit import db

    db.dispose()
    (runs_dir / "junk").mkdir()  # not a run: skipped
    assert runs.rebuild_index(runs_dir).runs == 2
    assert sorted(runs.list(runs_dir=runs_dir).run_id) == sorted(r.id for r in runs_)


def test_concurrent_processes_never_lose_rows(runs_dir):
    script = textwrap.dedent(f"""
        from expkit.runs import Run
        for i in range(15):
            run = Run.create("tiny", tenant=f"t{{i}}", runs_dir={str(runs_dir)!r})
            run.start()
            run.log_metrics(auroc=0.5 + i / 100)
            run.finish("succeeded")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    table = runs.list(runs_dir=runs_dir)
    assert len(table) == 45 and set(table.status) == {"succeeded"}
    with sqlite3.connect(runs_dir / "index.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- parameters ------------------------------------------------------------------------
def test_literal_parameters_flags_non_literals():
    params = literal_parameters('a = 1\nb: str = "x"\nc = len("ab")\nd = e = [1]\nimport os\n')
    assert params["a"] == 1 and params["b"] == "x" and params["d"] == [1] and params["e"] == [1]
    assert nonliteral(params) == ["c", "<line 5>"]


@pytest.mark.parametrize("default,text,expected", [
    (3, "4", 4), (0.5, "1e-3", 0.001), (False, "yes", True), (True, "0", False), ("x", "12", "12"),
    (None, "12", 12), (None, "none", None), (None, "data/leads.csv", "data/leads.csv"),
    ([1, 2], "[3]", [3]), (["a"], "b,c", ["b", "c"]),
])
def test_coerce_from_strings(default, text, expected):
    assert coerce("p", text, default, from_string=True) == expected


@pytest.mark.parametrize("default,text", [(3, "x"), (3, "1.5"), (0.5, "abc"), (False, "maybe"),
                                          ([1], "{'a': 1}")])
def test_coerce_rejects_wrong_types(default, text):
    with pytest.raises(ConfigError, match="not a valid"):
        coerce("p", text, default, from_string=True)


def test_coerce_typed_values_from_yaml():
    assert coerce("p", 3, 0.5, from_string=False) == 3.0
    for default, value in ((3, "3"), (3, True), (False, 1), ("x", 1)):
        with pytest.raises(ConfigError):
            coerce("p", value, default, from_string=False)


def test_resolve_params_names_and_data_paths(tmp_path, monkeypatch):
    tiny = os.path.join(FIXTURES, "tiny.ipynb")
    assert resolve_params(tiny, {"n": "5"}, {"ratio": 1}) == {"n": 5, "ratio": 1.0}
    with pytest.raises(ConfigError, match=r"unknown parameter 'nn'.*n, ratio, label"):
        resolve_params(tiny, {"nn": "5"})
    with pytest.raises(ConfigError, match="unknown parameter 'run_dir'"):
        resolve_params(tiny, {"run_dir": "x"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="data path missing.csv does not exist"):
        resolve_params(tiny, {"data": "missing.csv"})
    (tmp_path / "here.csv").write_text("a\n1\n")
    assert resolve_params(tiny, {"data": "here.csv"}) == {"data": "here.csv"}


def test_tenants_from_a_table_column(tmp_path):
    from expkit.errors import DataError
    from expkit.execute import tenants_from

    table = tmp_path / "accounts.csv"
    table.write_text("tenant,size\nacme,1\nglobex,2\nacme,3\n,4\n")
    assert tenants_from(f"{table}:tenant") == ["acme", "globex"]
    with pytest.raises(DataError, match="column 'customer' is not in"):
        tenants_from(f"{table}:customer")
    with pytest.raises(ConfigError, match="not FILE:COLUMN"):
        tenants_from(str(table))


def test_list_of_a_missing_runs_folder_is_empty(tmp_path):
    assert runs.list(runs_dir=tmp_path / "none").empty and not (tmp_path / "none").exists()
