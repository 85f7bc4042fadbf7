"""The expkit command: bad input is one line, a non-zero exit and no change (fast)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from expkit.cli import cli
from expkit.runs import Run

FIXTURES = Path(__file__).parents[1] / "fixtures"
TINY = str(FIXTURES / "tiny.ipynb")


def snapshot(folder: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture
def existing(runs_dir):
    """A runs folder that already holds one finished run."""
    run = Run.create("tiny", tenant="acme", runs_dir=runs_dir)
    run.start()
    run.finish("succeeded")
    return runs_dir


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, pattern, code=None):
    assert result.exit_code != 0 and (code is None or result.exit_code == code), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("args,pattern", [
    (["run", "nosuch", "--templates-dir", FIXTURES], "unknown template 'nosuch' (available: "),
    (["run", TINY, "-p", "nn", "3"], "unknown parameter 'nn' for template 'tiny' (parameters: n, ratio,"),
    (["run", TINY, "-p", "n", "three"], "parameter 'n': 'three' is not a valid int"),
    (["run", TINY, "-p", "flag", "maybe"], "parameter 'flag': 'maybe' is not a valid bool"),
    (["run", TINY, "-p", "data", "no/such/file.csv"], "data path no/such/file.csv does not exist"),
    (["run", TINY, "--tenant", "../x"], "tenant '../x' would escape the runs folder"),
    (["run", TINY, "--tenant", "/"], "tenant '/' would escape the runs folder"),
    (["run", TINY, "--tenants", "acme,../../etc"], "tenant '../../etc' would escape"),
    (["run", TINY, "--tenant", "a", "--tenants", "b,c"], "use only one of --tenant, --tenants"),
    (["run", TINY, "--tenants-from", "missing.csv:tenant"], "file missing.csv does not exist"),
    (["run", TINY, "-f", "missing.yaml"], "parameters file missing.yaml does not exist"),
    (["runs", "show", "20990101-000000-nope"], "no run '20990101-000000-nope'"),
    (["runs", "compare", "nope", "nada"], "no run 'nope'"),
    (["promote", "model", "nope", "--app", "leads"], "no run 'nope'"),
    (["promote", "notebook", FIXTURES / "no_parameters.ipynb", "--name", "x"], "no cell tagged 'parameters'"),
])
def test_bad_input_is_one_line_and_changes_nothing(existing, args, pattern):
    before = snapshot(existing)
    result = invoke(*args, "--runs-dir", existing)
    assert_one_line_error(result, pattern)
    assert snapshot(existing) == before


def test_wrong_yaml_type(existing, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("n: seven\n")
    result = invoke("run", TINY, "-f", params, "--runs-dir", existing)
    assert_one_line_error(result, "parameter 'n': 'seven' is not a valid int", code=2)


def test_runs_folder_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke("run", TINY, "--runs-dir", blocker / "runs")
    assert_one_line_error(result, "is not writable")
    assert blocker.read_text() == "not a folder"


def _run_without_root_powers(*args) -> subprocess.CompletedProcess:
    """The expkit command in a subprocess that cannot bypass file permissions: as root, the
    capabilities that let root write anywhere (CAP_DAC_OVERRIDE, ...) are dropped with
    util-linux's ``setpriv``; as another user it runs as it is."""
    command = [sys.executable, "-c", "from expkit.cli import main; main()", *map(str, args)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root needs util-linux's setpriv to drop CAP_DAC_OVERRIDE for this test")
        command = [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner",
                   "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_runs_folder_read_only(existing):
    """A runs folder that exists but cannot be written: refused up front, as root too."""
    before = snapshot(existing)
    existing.chmod(0o500)
    try:
        result = _run_without_root_powers("run", TINY, "--runs-dir", existing)
    finally:
        existing.chmod(0o700)
    assert result.returncode != 0, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: runs folder") and "is not writable: permission denied" \
        in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert snapshot(existing) == before


def test_usage_errors_are_short(existing):
    result = invoke("run")
    assert result.exit_code == 2 and "error: Missing argument 'TEMPLATE'" in result.stderr
    result = invoke("frobnicate")
    assert result.exit_code == 2 and "error: No such command 'frobnicate'" in result.stderr
    result = invoke("runs", "list", "--status", "done")
    assert result.exit_code == 2 and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(existing):
    result = invoke("--debug", "runs", "show", "nope", "--runs-dir", existing)
    assert result.exit_code == 1 and "Traceback" in result.stderr and "error: no run" in result.stderr


def test_runs_list_show_compare_rebuild(existing):
    other = Run.create("tiny", tenant="globex", params={"n": 2}, runs_dir=existing)
    other.start()
    other.log_metrics(auroc=0.61)
    other.finish("failed", error={"cell": 4, "execution_count": 3, "message": "ValueError: boom",
                                  "source": "raise ValueError('boom')"})
    listed = invoke("runs", "list", "--runs-dir", existing)
    assert listed.exit_code == 0 and "globex" in listed.stdout and "acme" in listed.stdout
    only = invoke("runs", "list", "--status", "failed", "--runs-dir", existing)
    assert "globex" in only.stdout and "acme" not in only.stdout
    shown = invoke("runs", "show", other.id, "--runs-dir", existing)
    assert shown.exit_code == 0 and "cell 4 (In [3]): ValueError: boom" in shown.stdout
    first = invoke("runs", "list", "--tenant", "acme", "--runs-dir", existing).stdout.splitlines()[1].split()[0]
    compared = invoke("runs", "compare", first, other.id, "--runs-dir", existing)
    assert compared.exit_code == 0
    lines = compared.stdout.splitlines()
    tenant_line = next(line for line in lines if " tenant " in f" {line} ")
    assert tenant_line.startswith("*") and "acme" in tenant_line and "globex" in tenant_line
    # what differs comes first, then what the runs share
    marks = [line.startswith("*") for line in lines[2:] if line.strip()]
    assert lines[0].startswith(f"{sum(marks)} of ") and marks == sorted(marks, reverse=True) and not all(marks)
    only = invoke("runs", "compare", first, other.id, "--diff", "--runs-dir", existing).stdout.splitlines()
    assert all(line.startswith("*") for line in only[2:])
    assert f"runs folder {existing} (given)" in listed.stderr
    found = invoke("runs", "list", "--where", "auroc < 0.7", "--sort", "auroc desc", "--runs-dir", existing)
    assert found.exit_code == 0 and "globex" in found.stdout and "acme" not in found.stdout
    assert found.stdout.splitlines()[0].split()[-1] == "auroc"  # the column named is shown
    bad = invoke("runs", "list", "--where", "auroc >> 1", "--runs-dir", existing)
    assert_one_line_error(bad, "cannot read the condition 'auroc >> 1'")
    rebuilt = invoke("runs", "rebuild-index", "--runs-dir", existing)
    assert rebuilt.exit_code == 0 and "indexed 2 run(s)" in rebuilt.stdout


def test_scoring_commands_are_registered():
    names = set(cli.commands)
    assert {"run", "runs", "promote", "models", "demo", "score", "feedback", "monitor"} <= names


def test_run_summary_says_when_the_budget_was_too_small(runs_dir):
    """The tournament's "budget too small" message reaches the CLI summary."""
    result = invoke("run", FIXTURES / "short_budget.ipynb", "--runs-dir", runs_dir)
    assert result.exit_code == 0, result.output
    assert "all: budget too small: 1 of 6 families tried; about 45 s would try them all" in result.stderr


def test_budget_note_is_read_from_the_run_metrics(tmp_path):
    from expkit.cli.run import budget_note

    assert budget_note({"path": None}) is None and budget_note({"path": str(tmp_path)}) is None
    (tmp_path / "metrics.json").write_text('{"budget_note": "budget too small: 2 of 7 families tried"}')
    assert budget_note({"path": str(tmp_path)}) == "budget too small: 2 of 7 families tried"
    (tmp_path / "metrics.json").write_text("{not json")
    assert budget_note({"path": str(tmp_path)}) is None


def test_asyncio_tracebacks_stay_out_of_the_command_output_unless_debug(tmp_path):
    """A notebook run stopped by SIGTERM can leave an asyncio task that fails once its
    kernel is shut down, after the command printed its one error line; its traceback is
    logged by asyncio (only --debug shows it). Papermill's line about a kernel that died at
    start is hidden too (the run's own line says it). expkit's own warnings, and other
    papermill errors, still show."""
    code = ("import logging, sys\n"
            "from expkit.cli import cli\n"
            "try:\n"
            f"    cli.main(sys.argv[1:] + ['runs', 'list', '--runs-dir', {str(tmp_path)!r}])\n"
            "except SystemExit:\n"
            "    pass\n"
            "logging.getLogger('asyncio').error('Task exception was never retrieved')\n"
            "logging.getLogger('papermill').error('Error occurred while starting new kernel client"
            " for kernel k: Kernel died before replying to kernel_info')\n"
            "logging.getLogger('papermill').error('another papermill error')\n"
            "logging.getLogger('expkit.runs').warning('an expkit warning')\n")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "an expkit warning" in quiet.stderr and "another papermill error" in quiet.stderr, quiet.stderr
    assert "Task exception" not in quiet.stderr and "Kernel died" not in quiet.stderr, quiet.stderr
    debug = subprocess.run([sys.executable, "-c", code, "--debug"], capture_output=True, text=True)
    assert "Task exception was never retrieved" in debug.stderr, debug.stderr
    assert "Kernel died before replying" in debug.stderr, debug.stderr
