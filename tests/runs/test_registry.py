"""Model promotion: the gates, versions, rollback and atomic changes."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import IntegrityError

from expkit import registry as registry_mod
from expkit.cli import cli
from expkit.db import session
from expkit.errors import ModelError, PromotionError, RegistryError
from expkit.files import file_digests, sha256_dir
from expkit.registry import JOURNAL, ModelVersion, Registry
from expkit.runs import Run


@pytest.fixture(autouse=True)
def _model(tiny_model):
    global MODEL
    MODEL = tiny_model


def model_run(runs_dir, auroc=0.8, above_chance=True, status="succeeded", tenant="acme", model=True,
              metric="auroc"):
    """A finished run with a real (tiny) model and metrics.json as a tournament writes it."""
    run = Run.create("tournament", tenant=tenant, runs_dir=runs_dir)
    run.start()
    if model:
        shutil.copytree(MODEL, run.dir / "model")
    run.log_metrics({"task": "binary", "winner": "logistic", "metric_name": metric, "holdout": {metric: auroc},
                     "above_chance": above_chance})
    run.finish(status)
    return run


def test_promote_records_version_who_and_folder_digests(runs_dir):
    run = model_run(runs_dir)
    entry = Registry().promote(run.id, "leads", "acme", reason="first", by="ana")
    files = file_digests(run.dir / "model")
    assert set(files) == {"model.skops", "card.json"} and entry["files"] == files
    assert (entry["version"], entry["sha256"], entry["by"], entry["reason"]) == \
        (1, sha256_dir(run.dir / "model"), "ana", "first")
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


# -- integrity: the folder digest, the trusted loader --------------------------------------
def test_the_registry_digest_refuses_a_tampered_card(runs_dir):
    """The card keeps the model file's digest but not its own: only the folder digest the
    registry recorded at promotion can catch an edited threshold."""
    from expkit.scoring.scorer import load_scorer

    run = model_run(runs_dir)
    Registry().promote(run.id, "leads", "acme")
    assert load_scorer("leads", "acme", lazy=True).threshold == 0.5
    card_file = run.dir / "model" / "card.json"
    card = json.loads(card_file.read_text())
    card["threshold"] = 0.0
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"card\.json \(changed\)"):
        load_scorer("leads", "acme", lazy=True)
    (run.dir / "model" / "extra.txt").write_text("planted")
    with pytest.raises(ModelError, match=r"card\.json \(changed\), extra\.txt \(added\)"):
        load_scorer("leads", "acme", lazy=True)


@pytest.mark.parametrize("forge,pattern", [
    (lambda m: (m / "model.skops").write_bytes(b"not a zip at all"), "has sha256"),
    (lambda m: _reseal(m, b"PK\x05\x06" + b"\0" * 18), "cannot load"),
    (lambda m: (m / "card.json").write_text("{not json"), "not valid JSON"),
])
def test_promotion_loads_the_model_with_the_trusted_loader(runs_dir, forge, pattern):
    run = model_run(runs_dir)
    forge(run.dir / "model")
    with pytest.raises(PromotionError, match=f"refused: .*({pattern})"):
        Registry().promote(run.id, "leads", "acme")
    assert Registry().list().empty and not (runs_dir / JOURNAL).exists()


def _reseal(model_dir, data: bytes) -> None:
    """Replace model.skops and update the card's digest, as a forger would."""
    import hashlib

    (model_dir / "model.skops").write_bytes(data)
    card = json.loads((model_dir / "card.json").read_text())
    card["sha256"] = hashlib.sha256(data).hexdigest()
    (model_dir / "card.json").write_text(json.dumps(card))


def test_promotion_refuses_untrusted_types(runs_dir):
    import skops.io as sio

    run = model_run(runs_dir)
    _reseal(run.dir / "model", sio.dumps({"f": print.__class__}))  # a builtin function type
    with pytest.raises(PromotionError, match="refused: .*(untrusted types|cannot load)"):
        Registry().promote(run.id, "leads", "acme")


def test_gate_lower_is_better_refuses_a_worse_log_loss(runs_dir):
    reg = Registry()
    reg.promote(model_run(runs_dir, 0.30, metric="log_loss").id, "leads", "acme")
    worse = model_run(runs_dir, 0.40, metric="log_loss")
    with pytest.raises(PromotionError, match=r"log_loss 0.4000 is worse than production version 1 \(0.3000\)"):
        reg.promote(worse.id, "leads", "acme")
    assert reg.promote(model_run(runs_dir, 0.305, metric="log_loss").id, "leads", "acme")["version"] == 2
    assert reg.promote(model_run(runs_dir, 0.20, metric="log_loss").id, "leads", "acme")["version"] == 3


def test_rollback_refuses_a_changed_folder(runs_dir):
    reg = Registry()
    a, b = model_run(runs_dir), model_run(runs_dir, auroc=0.85)
    reg.promote(a.id, "leads", "acme")
    reg.promote(b.id, "leads", "acme")
    (a.dir / "model" / "card.json").write_text("{}")
    with pytest.raises(RegistryError, match=r"cannot roll back: .*card\.json \(changed\)"):
        reg.rollback("leads", "acme")
    assert reg.production("leads", "acme")["run_id"] == b.id


# -- the journal: what the index holds can be rebuilt ----------------------------------------
def _pointers(reg):
    table = reg.list()
    return table[["app", "tenant", "version", "status", "run_id", "sha256"]].to_dict("records")


def test_rebuild_from_the_journal_restores_history_and_pointers(runs_dir):
    from expkit import db

    reg = Registry()
    a, b, c = (model_run(runs_dir, auroc=x) for x in (0.8, 0.85, 0.9))
    reg.promote(a.id, "leads", "acme")
    reg.promote(b.id, "leads", "acme")
    reg.rollback("leads", "acme")
    reg.promote(c.id, "leads")
    before = _pointers(reg)
    assert len((runs_dir / JOURNAL).read_text().splitlines()) == 4
    db.dispose()
    for f in runs_dir.glob("index.db*"):
        f.unlink()
    assert reg.rebuild() == 4
    assert _pointers(reg) == before
    db.dispose()
    for f in runs_dir.glob("index.db*"):
        f.unlink()
    assert _pointers(Registry()) == before  # reading alone brings an empty index up to date


def test_an_entry_journaled_but_not_indexed_is_applied(runs_dir):
    """What a kill -9 between the journal append and the commit leaves: the next use applies it."""
    reg = Registry()
    a, b = model_run(runs_dir), model_run(runs_dir, auroc=0.85)
    reg.promote(a.id, "leads", "acme")
    reg.promote(b.id, "leads", "acme")
    with session(runs_dir) as s:  # the index without version 2
        s.query(ModelVersion).filter(ModelVersion.version == 2).delete()
        s.query(ModelVersion).filter(ModelVersion.version == 1).update({"status": "production"})
    assert reg.production("leads", "acme")["run_id"] == b.id
    assert reg.list().set_index("version").status.to_dict() == {2: "production", 1: "archived"}


def test_a_torn_journal_line_is_skipped_and_not_glued_to_the_next(runs_dir):
    reg = Registry()
    reg.promote(model_run(runs_dir).id, "leads", "acme")
    with open(runs_dir / JOURNAL, "a") as fh:
        fh.write('{"event": "promote", "app": "le')  # a crash mid-append
    reg.promote(model_run(runs_dir, auroc=0.85).id, "leads", "acme")
    lines = (runs_dir / JOURNAL).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["version"] == 2
    assert reg.rebuild() == 2


def test_index_rows_without_a_journal_are_journaled_before_a_rebuild(runs_dir):
    """An index made by an expkit without a journal loses nothing to a rebuild."""
    reg = Registry()
    a, b = model_run(runs_dir), model_run(runs_dir, auroc=0.85)
    reg.promote(a.id, "leads", "acme")
    reg.promote(b.id, "leads", "acme")
    reg.rollback("leads", "acme")
    before = _pointers(reg)
    (runs_dir / JOURNAL).unlink()
    assert reg.rebuild() == 3
    assert _pointers(reg) == before


def test_a_failed_change_takes_its_journal_line_back(runs_dir, monkeypatch):
    reg = Registry()
    reg.promote(model_run(runs_dir).id, "leads", "acme")
    journal = (runs_dir / JOURNAL).read_bytes()
    b = model_run(runs_dir)

    def broken_apply(s, event):
        raise RuntimeError("the index failed after the journal was written")

    monkeypatch.setattr(Registry, "_apply", staticmethod(broken_apply))
    with pytest.raises(RuntimeError):
        reg.promote(b.id, "leads", "acme")
    assert (runs_dir / JOURNAL).read_bytes() == journal
