"""One runs folder wherever you stand, said out loud; links that open where they are shown."""
from __future__ import annotations

import json
import os

import pytest

from expkit import paths


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project (pyproject.toml at its root) with a notebooks/ folder, and no $EXPKIT_RUNS."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname='p'\n")
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    monkeypatch.delenv("EXPKIT_RUNS", raising=False)
    return tmp_path


def test_the_runs_folder_is_the_project_roots_from_any_subfolder(project, monkeypatch):
    for where in (project, project / "notebooks", project / "notebooks" / "deep"):
        monkeypatch.chdir(where)
        folder, why = paths.runs_dir_source()
        assert folder == project / "runs" and why == f"project root {project}"
    assert paths.describe_runs_dir() == f"runs folder {project / 'runs'} (project root {project})"
    # a runs/ folder below the root marks a nearer root
    (project / "notebooks" / "runs").mkdir()
    monkeypatch.chdir(project / "notebooks" / "deep")
    assert paths.runs_dir() == project / "notebooks" / "runs"


def test_environment_and_argument_win_and_say_so(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project / "notebooks")
    monkeypatch.setenv("EXPKIT_RUNS", str(tmp_path / "elsewhere"))
    assert paths.runs_dir_source() == (tmp_path / "elsewhere", "$EXPKIT_RUNS")
    assert paths.runs_dir_source(tmp_path / "given") == (tmp_path / "given", "given")


def test_outside_any_project_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("EXPKIT_RUNS", raising=False)
    monkeypatch.chdir(tmp_path)
    if paths.project_root() is not None:  # the machine's /tmp sits inside a project
        pytest.skip(f"{tmp_path} is inside the project {paths.project_root()}")
    assert paths.runs_dir_source() == (tmp_path / "runs", "working folder: no project root above it")


def _fake_server(tmp_path, monkeypatch, root, base_url="/"):
    """A Jupyter server record, as jupyter_server writes it, for a server that is this process."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    info = {"pid": os.getpid(), "root_dir": str(root), "base_url": base_url, "url": "http://127.0.0.1:1/",
            "port": 1, "token": "t", "secure": False, "hostname": "127.0.0.1", "version": "2"}
    (runtime / f"jpserver-{os.getpid()}.json").write_text(json.dumps(info))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))


def test_href_in_a_jupyter_kernel_is_the_servers_files_url(tmp_path, monkeypatch):
    report = tmp_path / "proj" / "runs" / "r 1" / "report.html"
    _fake_server(tmp_path, monkeypatch, tmp_path / "proj", base_url="/user/ann/")
    assert paths.jupyter_server()["root_dir"] == str(tmp_path / "proj")
    assert paths.href(report) == "/user/ann/files/runs/r%201/report.html"
    outside = tmp_path / "other" / "report.html"
    assert paths.href(outside) == outside.as_uri()  # the server cannot serve it: a file URI


def test_href_outside_jupyter_is_a_file_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    assert paths.jupyter_server() is None
    assert paths.href(tmp_path / "a b" / "report.html") == (tmp_path / "a b" / "report.html").as_uri()
    # a kernel started by papermill (no server with that pid) also gets a file URI
    monkeypatch.setenv("JPY_PARENT_PID", "1")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    assert paths.href(tmp_path / "r.html").startswith("file://")
