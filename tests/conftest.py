"""Shared fixtures. Tests that need ../shared/data use ``shared_data`` and skip
cleanly when it is absent; core tests use bundled or generated data only."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import matplotlib
import pytest

from tests.dask_cluster import dask_cluster  # noqa: F401 - a real Dask cluster for the tests that ask

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]

# tests/fixtures holds notebooks that fail or kill their kernel on purpose (for
# the run-lifecycle tests); nbval must not collect them as notebooks to check.
collect_ignore_glob = ["fixtures/*", "bad_inputs/files/*"]
SHARED = Path(os.environ.get("EXPKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when it is not there."""
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model folder (model.skops + card.json) of a real, tiny fitted pipeline, made once
    per session; copy it (``shutil.copytree``) into the runs that need a model."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from expkit.models.bundle import save_model
    from expkit.schema import infer

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=60)})
    y = (X["x"] > 0).astype(int)
    pipeline = Pipeline([("model", LogisticRegression())]).fit(X, y)
    folder = tmp_path_factory.mktemp("tiny-model") / "model"
    card = {"task": "binary", "classes": [0, 1], "threshold": 0.5, "target": "y",
            "schema": infer(X.assign(y=y), "y").to_dict()}
    return save_model(pipeline, folder, card)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    """An empty runs folder used by everything that writes runs, registry or logs."""
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("EXPKIT_RUNS", str(d))
    monkeypatch.delenv("EXPKIT_DB", raising=False)
    return d



@pytest.fixture
def webhook():
    """A local HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it
    (``.received``); ``.fail = True`` makes it answer 500."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server hook name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if server.fail:
                self.send_response(500)
                self.end_headers()
                return
            server.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.received, server.fail = [], False
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def pytest_configure(config):
    """Ctrl-C reaches the processes the tests start, even when the suite itself was started
    in the background (``nohup make test &`` ignores SIGINT, and children inherit that)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
