"""Model promotion: the gates, versions, rollback and atomic changes."""
from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import IntegrityError

from expkit import registry as registry_mod
from expkit.cli import cli
from expkit.db import session
from expkit.errors import PromotionError, RegistryError
from expkit.registry import ModelVersion, Registry
from expkit.runs import Run


def model_run(runs_dir, auroc=0.8, above_chance=True, status="succeeded", tenant="acme", model=True):
    """A finished run with a (stand-in) model and metrics.json as a tournament writes it."""
    run = Run.create("tournament", tenant=tenant, runs_dir=runs_dir)
    run.start()
    if model:
        (run.dir / "model").mkdir()
        (run.dir / "model" / "model.skops").write_bytes(f"model of {run.id}".encode())
    run.log_metrics({"task": "binary", "winner": "logistic", "holdout": {"auroc": auroc},
                     "above_chance": above_chance})
    run.finish(status)
    return run


def test_promote_records_version_who_and_hash(runs_dir):
    run = model_run(runs_dir)
    entry = Registry().promote(run.id, "leads", "acme", reason="first", by="ana")
    expected = hashlib.sha256((run.dir / "model" / "model.skops").read_bytes()).hexdigest()
    assert (entry["version"], entry["sha256"], entry["by"], entry["reason"]) == (1, expected, "ana", "first")
    prod = Registry().production("leads", "acme")
    assert prod["run_id"] == run.id and prod["model_dir"] == str(run.dir / "model")
    assert (prod["metric_name"], prod["metric"]) == ("auroc", 0.8) and prod["previous_version"] is None


@pytest.mark.parametrize("kwargs,pattern", [
    ({"status": "failed"}, "is failed, not succeeded"),
    ({"above_chance": False}, "not above chance"),
    ({"model": False}, "has no model"),
])
def test_refused_runs(runs_dir, kwargs, pattern):
    run = model_run(runs_dir, **kwargs)
    with pytest.raises(PromotionError, match=pattern):
        Registry().promote(run.id, "leads", "acme")
    assert Registry().list().empty


def test_unknown_run_and_no_production(runs_dir):
    with pytest.raises(PromotionError, match="no run 'nope'"):
        Registry().promote("nope", "leads")
    with pytest.raises(RegistryError, match="no production model for app 'leads'"):
        Registry().production("leads", "acme")


def test_gate_tolerance_force_and_history(runs_dir):
    reg = Registry()
    first = model_run(runs_dir, auroc=0.80)
    reg.promote(first.id, "leads", "acme")
    slightly_worse = model_run(runs_dir, auroc=0.795)
    assert reg.promote(slightly_worse.id, "leads", "acme")["version"] == 2  # within 0.01
    much_worse = model_run(runs_dir, auroc=0.70)
    with pytest.raises(PromotionError, match=r"auroc 0.7000 is worse than production version 2"):
        reg.promote(much_worse.id, "leads", "acme")
    assert reg.production("leads", "acme")["version"] == 2
    forced = reg.promote(much_worse.id, "leads", "acme", force=True, reason="new data")
    assert (forced["version"], forced["previous_version"], forced["reason"]) == (3, 2, "new data")
    table = reg.list()
    assert table.version.tolist() == [3, 2, 1]
    assert table.status.tolist() == ["production", "archived", "archived"]


def test_rollback_puts_back_the_previous_model(runs_dir):
    reg = Registry()
    a, b = model_run(runs_dir, auroc=0.8), model_run(runs_dir, auroc=0.85)
    reg.promote(a.id, "leads", "acme")
    reg.promote(b.id, "leads", "acme")
    back = reg.rollback("leads", "acme")
    assert (back["version"], back["run_id"], back["previous_version"]) == (3, a.id, None)
    assert "rollback of version 2 to version 1" in back["reason"]
    assert reg.list().set_index("version").status.to_dict() == {3: "production", 2: "rolled_back",
                                                                 1: "archived"}
    with pytest.raises(RegistryError, match="no previous production model"):
        reg.rollback("leads", "acme")
    with pytest.raises(RegistryError, match="to roll back"):
        reg.rollback("leads", "globex")


def test_tenants_are_separate_and_fall_back_to_the_app_model(runs_dir):
    reg = Registry()
    app_wide, acme = model_run(runs_dir, tenant=None), model_run(runs_dir, auroc=0.6)
    reg.promote(app_wide.id, "leads")
    reg.promote(acme.id, "leads", "acme")  # no gate against the app-wide model
    assert reg.production("leads", "acme")["run_id"] == acme.id
    assert reg.production("leads", "globex")["run_id"] == app_wide.id
    assert reg.production("leads")["tenant"] is None


def test_a_failed_change_leaves_the_registry_as_it_was(runs_dir, monkeypatch):
    reg = Registry()
    a, b = model_run(runs_dir), model_run(runs_dir)
    reg.promote(a.id, "leads", "acme")
    monkeypatch.setattr(registry_mod, "now", lambda: 1 / 0)  # fails after the old row is archived
    with pytest.raises(ZeroDivisionError):
        reg.promote(b.id, "leads", "acme")
    assert reg.list()[["version", "status"]].values.tolist() == [[1, "production"]]


def test_one_production_model_per_app_and_tenant_is_enforced(runs_dir):
    Registry().promote(model_run(runs_dir).id, "leads", "acme")
    with pytest.raises(IntegrityError):
        with session(runs_dir) as s:
            s.add(ModelVersion(app="leads", tenant_key="acme", version=9, status="production",
                               run_id="x", model_dir="x", sha256="0" * 64, promoted_at="now", by="me"))


def test_cli_promote_list_rollback(runs_dir):
    a, b = model_run(runs_dir, auroc=0.8), model_run(runs_dir, auroc=0.6)

    def invoke(*args):
        return CliRunner().invoke(cli, [*args, "--runs-dir", str(runs_dir)])

    ok = invoke("promote", "model", a.id, "--app", "leads", "--tenant", "acme", "--reason", "first")
    assert ok.exit_code == 0 and "version 1" in ok.stdout and "auroc 0.8" in ok.stdout
    refused = invoke("promote", "model", b.id, "--app", "leads", "--tenant", "acme")
    assert refused.exit_code == 1 and refused.stderr.startswith("error: refused: hold-out auroc 0.6000")
    assert invoke("promote", "model", b.id, "--app", "leads", "--tenant", "acme", "--force").exit_code == 0
    listed = invoke("models", "list")
    assert listed.exit_code == 0 and b.id in listed.stdout and a.id not in listed.stdout
    assert a.id in invoke("models", "list", "--all").stdout
    back = invoke("promote", "model", "--rollback", "--app", "leads", "--tenant", "acme")
    assert back.exit_code == 0 and f"(run {a.id}) is in production" in back.stdout
    none = invoke("promote", "model", "--app", "leads")
    assert none.exit_code == 2 and "give the RUN_ID" in none.stderr
