"""Schedules: the file, cron slots, what is due (a missed slot caught up once), the claim
that makes a slot start once, and the CLI around them (no template runs here)."""
from __future__ import annotations

import datetime as dt
import multiprocessing as mp
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from expkit import schedules
from expkit.cli import cli
from expkit.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def project(tmp_path, runs_dir, monkeypatch):
    """A project folder (schedules.yaml goes here) with the runs folder inside."""
    monkeypatch.setenv("EXPKIT_SCHEDULES", str(tmp_path / "schedules.yaml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def hourly(**kw):
    return schedules.Schedule(name="monitor", template="monitor", cron="0 * * * *", **kw)


def test_slots_in_utc_and_in_a_time_zone():
    s = schedules.Schedule(name="retrain", template="t", cron="0 3 1 * *")
    assert s.latest_slot(at("2024-05-01T03:00")) == at("2024-05-01T03:00")  # a slot at now counts
    assert s.latest_slot(at("2024-05-01T02:59")) == at("2024-04-01T03:00")
    assert s.next_slot(at("2024-05-01T03:00")) == at("2024-06-01T03:00")
    berlin = schedules.Schedule(name="b", template="t", cron="0 3 * * *", timezone="Europe/Berlin")
    assert berlin.latest_slot(at("2024-07-01T02:00")) == at("2024-07-01T01:00")  # 03:00 CEST


def test_missed_slots_are_caught_up_once(runs_dir):
    s = hourly(since="2024-01-01T00:00:00+00:00")
    assert schedules.due(s, at("2023-12-31T23:59"), runs_dir) is None  # before it was added
    slot, missed = schedules.due(s, at("2024-01-01T05:30"), runs_dir)
    assert slot == at("2024-01-01T05:00") and missed == 5  # 00:00 .. 04:00 are not run one by one
    assert schedules.claim("monitor", slot, missed, runs_dir) is not None
    assert schedules.due(s, at("2024-01-01T05:59"), runs_dir) is None
    assert schedules.due(s, at("2024-01-01T06:00"), runs_dir) == (at("2024-01-01T06:00"), 0)


def test_a_slot_is_claimed_once(runs_dir):
    slot = at("2024-01-01T05:00")
    first = schedules.claim("monitor", slot, 0, runs_dir)
    assert first is not None and schedules.claim("monitor", slot, 0, runs_dir) is None
    assert schedules.claim("other", slot, 0, runs_dir) is not None


def _claim(runs_dir, barrier, out):
    barrier.wait()
    out.put(schedules.claim("retrain", at("2024-02-01T03:00"), 0, runs_dir))


def test_processes_claiming_the_same_slot_at_once_get_it_once(runs_dir):
    schedules.claim("warm-up", at("2024-01-01T00:00"), 0, runs_dir)  # the tables exist before the race
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(str(runs_dir), barrier, out)) for _ in range(6)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert sum(g is not None for g in got) == 1
    assert len(schedules.starts("retrain", runs_dir)) == 1


def test_file_round_trip_and_checks(project):
    schedules.add(hourly(params={"app": "leads"}, alert=True), now="2024-01-01T00:00")
    schedules.add(schedules.Schedule(name="retrain", template="tournament", cron="0 3 1 * *",
                                     tenants=["a", "b"], promote="if-better", app="leads"))
    data = yaml.safe_load((project / "schedules.yaml").read_text())
    assert data["schedules"]["monitor"] == {"template": "monitor", "cron": "0 * * * *", "params": {"app": "leads"},
                                            "alert": True, "since": "2024-01-01T00:00:00+00:00"}
    assert [s.name for s in schedules.load()] == ["monitor", "retrain"]
    with pytest.raises(ConfigError, match="already exists"):
        schedules.add(hourly())
    schedules.remove("monitor")
    assert [s.name for s in schedules.load()] == ["retrain"]
    with pytest.raises(ConfigError, match="no schedule 'monitor'"):
        schedules.remove("monitor")


@pytest.mark.parametrize("kwargs,pattern", [
    ({"cron": "61 * * * *"}, "is not a cron expression"),
    ({"promote": "always"}, "promote 'always' is not known"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"params": {"data": "postgresql://u:hunter2@db/crm"}}, "holds a password"),
    ({"tenants": ["a"], "tenants_from": "x.csv:t"}, "not both"),
    ({"name": "../x"}, "would escape"),
])
def test_bad_entries_are_refused(kwargs, pattern):
    entry = {"name": "s", "template": "t", "cron": "0 * * * *", **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        schedules.Schedule(**entry)


def test_a_hand_edited_file_is_checked(project):
    (project / "schedules.yaml").write_text("schedules:\n  x:\n    template: t\n    cron: '0 * * * *'\n    when: now\n")
    with pytest.raises(ConfigError, match="unknown key.*when"):
        schedules.load()
    (project / "schedules.yaml").write_text("schedules: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        schedules.load()


def test_cli_add_list_remove_and_cron(project):
    runner = CliRunner()
    tiny = str(FIXTURES / "tiny.ipynb")
    out = runner.invoke(cli, ["schedule", "add", "nightly", "--template", tiny, "--cron", "0 2 * * *",
                              "-p", "n", "5", "--tenants", "a,b", "--now", "2024-01-01T00:00"])
    assert out.exit_code == 0, out.output
    assert "next run 2024-01-01 02:00" in out.output
    entry = schedules.get("nightly")
    assert entry.params == {"n": 5} and entry.tenants == ["a", "b"]
    listed = runner.invoke(cli, ["schedule", "list", "--now", "2024-01-01T00:00"])
    assert "nightly" in listed.output and "never run" in listed.output and "2024-01-01 02:00" in listed.output
    cron = runner.invoke(cli, ["schedule", "cron"])
    assert cron.exit_code == 0 and "* * * * * cd " in cron.output and "schedule run-due" in cron.output
    bad = runner.invoke(cli, ["schedule", "add", "x", "--template", tiny, "--cron", "0 2 * * *", "-p", "nope", "1"])
    assert bad.exit_code == 2 and "unknown parameter 'nope'" in bad.output
    bad = runner.invoke(cli, ["schedule", "add", "x", "--template", tiny, "--cron", "every day"])
    assert bad.exit_code == 2 and "is not a cron expression" in bad.output
    bad = runner.invoke(cli, ["schedule", "add", "x", "--template", tiny, "--cron", "0 2 * * *",
                              "--promote", "if-better"])
    assert bad.exit_code == 2 and "needs the app" in bad.output
    assert runner.invoke(cli, ["schedule", "remove", "nightly"]).exit_code == 0
    assert "no schedules" in runner.invoke(cli, ["schedule", "list"]).output
