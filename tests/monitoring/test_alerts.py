"""Alert sinks and the once-until-cleared rule, with a webhook server on 127.0.0.1."""
from __future__ import annotations

import json
import multiprocessing as mp
from datetime import datetime

import pytest
import yaml

from expkit.errors import ConfigError
from expkit.monitoring import alerts

NOW = datetime(2024, 5, 1, 3, 0)
DRIFT = {"level": "alert", "app": "leads", "tenant": "acme", "check": "drift", "field": "spend",
         "message": "leads/acme: field 'spend' drifted from training (PSI 0.90 >= 0.25)"}
EVALUATED = [("leads", "acme", c) for c in alerts.MONITOR_CHECKS]


@pytest.fixture
def project(tmp_path, runs_dir, monkeypatch):
    monkeypatch.setenv("EXPKIT_SCHEDULES", str(tmp_path / "schedules.yaml"))
    return tmp_path


def configure(project, *sinks, level="alert"):
    (project / "schedules.yaml").write_text(yaml.safe_dump({"alerts": {"level": level, "sinks": list(sinks)}}))


def test_sent_once_until_cleared_then_again(project, runs_dir, webhook):
    configure(project, {"webhook": webhook.url})
    assert len(alerts.notify([DRIFT], EVALUATED, source="monitor", now=NOW)) == 1
    assert len(webhook.received) == 1
    body = webhook.received[0]["body"]
    assert body["check"] == "drift" and body["app"] == "leads" and body["tenant"] == "acme"
    assert body["text"].startswith("[expkit] ALERT leads/acme: drift") and body["source"] == "monitor"
    assert alerts.notify([DRIFT], EVALUATED, now=NOW) == [] and len(webhook.received) == 1  # next tick
    resolved = alerts.notify([], EVALUATED, source="monitor", now=NOW)  # the drift is gone: said once
    assert alerts.state(runs_dir).iloc[0]["status"] == "cleared"
    assert len(resolved) == 1 and len(webhook.received) == 2
    body = webhook.received[1]["body"]
    assert body["level"] == "resolved" and body["text"].startswith("[expkit] RESOLVED leads/acme: drift")
    assert "PSI 0.90" in body["message"] and body["resolved_at"] == NOW.isoformat()
    assert alerts.notify([], EVALUATED, now=NOW) == [] and len(webhook.received) == 2  # next tick: quiet
    alerts.notify([DRIFT], EVALUATED, now=NOW)  # and back
    assert len(webhook.received) == 3 and webhook.received[2]["body"]["level"] == "alert"
    assert alerts.state(runs_dir).iloc[0]["times_opened"] == 2


def test_resolved_goes_only_to_the_sinks_that_got_the_alert(project, webhook):
    configure(project, {"webhook": webhook.url}, {"file": "alerts.jsonl"})
    webhook.fail = True
    alerts.notify([DRIFT], EVALUATED, now=NOW)  # reached the file only
    webhook.fail = False
    sent = alerts.notify([], EVALUATED, now=NOW)
    assert [r["sinks"] for r in sent] == [[f"file:{project / 'alerts.jsonl'}"]] and webhook.received == []
    lines = [json.loads(line) for line in (project / "alerts.jsonl").read_text().splitlines()]
    assert [line["level"] for line in lines] == ["alert", "resolved"]
    assert alerts.payload(lines[1], "teams")["attachments"][0]["content"]["body"][0]["color"] == "Good"


def test_an_alert_is_keyed_by_app_tenant_and_check(project, webhook):
    configure(project, {"webhook": webhook.url})
    other = {**DRIFT, "tenant": "globex"}
    two_fields = [DRIFT, {**DRIFT, "field": "source", "message": "field 'source' drifted"}]
    alerts.notify(two_fields + [other], EVALUATED, now=NOW)
    assert sorted(r["body"]["tenant"] for r in webhook.received) == ["acme", "globex"]
    acme = next(r["body"] for r in webhook.received if r["body"]["tenant"] == "acme")
    assert "'spend'" in acme["message"] and "'source'" in acme["message"]  # one message per key
    alerts.notify([DRIFT], EVALUATED, now=NOW)  # globex was not evaluated: it stays open
    assert set(alerts.state(runs_dir=None, open_only=True)["tenant"]) == {"acme", "globex"}


def test_warnings_only_when_asked(project, webhook):
    warning = {**DRIFT, "level": "warning"}
    configure(project, {"webhook": webhook.url})
    assert alerts.notify([warning], EVALUATED, now=NOW) == []
    configure(project, {"webhook": webhook.url}, level="warning")
    assert len(alerts.notify([warning], EVALUATED, now=NOW)) == 1


def test_a_failed_sink_gets_the_alert_on_a_later_tick(project, runs_dir, webhook):
    configure(project, {"webhook": webhook.url}, {"file": "alerts.jsonl"})
    webhook.fail = True
    first = alerts.notify([DRIFT], EVALUATED, now=NOW)
    assert first[0]["sinks"] == [f"file:{project / 'alerts.jsonl'}"]
    webhook.fail = False
    second = alerts.notify([DRIFT], EVALUATED, now=NOW)
    assert second[0]["sinks"] == [alerts.Sink("webhook", webhook.url).id] and len(webhook.received) == 1
    assert second[0]["sinks"][0].startswith("webhook:127.0.0.1:") and "/hook" not in second[0]["sinks"][0]
    lines = (project / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["check"] == "drift"  # the file got it once
    assert alerts.notify([DRIFT], EVALUATED, now=NOW) == []


@pytest.mark.parametrize("fmt", ["slack", "teams"])
def test_slack_and_teams_payloads(project, webhook, fmt, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "t0k")
    configure(project, {"webhook": webhook.url + "?token=${HOOK_TOKEN}", "format": fmt,
                        "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"}})
    alerts.notify([DRIFT], EVALUATED, now=NOW)
    got = webhook.received[0]
    assert got["path"].endswith("token=t0k") and got["headers"]["Authorization"] == "Bearer t0k"
    if fmt == "slack":
        assert got["body"]["text"].startswith("[expkit] ALERT") and got["body"]["blocks"][0]["type"] == "section"
    else:
        card = got["body"]["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert card["content"]["body"][1]["text"] == DRIFT["message"]


def test_default_sinks_are_the_log_and_a_file_in_the_runs_folder(project, runs_dir, caplog):
    alerts.notify([DRIFT], EVALUATED, now=NOW)
    assert "ALERT: leads/acme: field 'spend' drifted" in caplog.text
    assert json.loads((runs_dir / "alerts.jsonl").read_text())["message"] == DRIFT["message"]


@pytest.mark.parametrize("sinks,pattern", [
    ([{"email": "a@b.c"}], "not understood"),
    ([{"webhook": "http://x", "format": "xml"}], "format 'xml'"),
    ([{"webhook": "http://x", "timeout": "soon"}], "not a number"),
])
def test_bad_sink_configuration(project, sinks, pattern):
    configure(project, *sinks)
    with pytest.raises(ConfigError, match=pattern):
        alerts.config()


def _notify(runs_dir, schedules_file, barrier, out):
    import os

    os.environ["EXPKIT_RUNS"], os.environ["EXPKIT_SCHEDULES"] = runs_dir, schedules_file
    barrier.wait()
    out.put(len(alerts.notify([DRIFT], EVALUATED, now=NOW)))


def test_concurrent_monitors_send_once(project, runs_dir):
    configure(project, {"file": "alerts.jsonl"})
    alerts.notify([], [("warm", "up", "x")], now=NOW)  # tables exist before the race
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_notify, args=(str(runs_dir), str(project / "schedules.yaml"), barrier, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    counts = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    assert counts == [0, 0, 0, 1]
    assert len((project / "alerts.jsonl").read_text().splitlines()) == 1


def test_cli_alerts_test_and_list(project, runs_dir, webhook):
    from click.testing import CliRunner

    from expkit.cli import cli

    configure(project, "log", {"webhook": webhook.url})
    out = CliRunner().invoke(cli, ["alerts", "test"])
    assert out.exit_code == 0 and f"{alerts.Sink('webhook', webhook.url).id}: sent" in out.output
    assert webhook.received[0]["body"]["check"] == "test"
    webhook.fail = True
    out = CliRunner().invoke(cli, ["alerts", "test"])
    assert out.exit_code == 1 and "FAILED" in out.output and "log: sent" in out.output
    assert "no open alerts" in CliRunner().invoke(cli, ["alerts", "list"]).output  # a test is not recorded
    webhook.fail = False
    alerts.notify([DRIFT], EVALUATED, now=NOW)
    listed = CliRunner().invoke(cli, ["alerts", "list"]).output
    assert "open" in listed and "drift" in listed and "acme" in listed
