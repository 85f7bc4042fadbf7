"""A throw-away JupyterLab server and Playwright helpers for real-browser tests.

Used by tests/browser/test_lab.py and docs/widgets/make_snapshots.py. The browser
is the system's Chromium (Debian's ``chromium`` package) driven by Playwright
through ``executable_path``: Playwright's own browser download is never used.

Recipe (measured on a shared 2-CPU machine, see docs/design.md): JupyterLab on a
free 127.0.0.1 port with a random token and its settings, workspaces and runtime
files in a temporary folder; a notebook is "ready" when JupyterLab's app (exposed
with ``--LabApp.expose_app_in_browser``) says its kernel is connected and idle and
every cell is in the DOM; Run > Run All Cells; the run is over when every code
cell shows an execution count and the kernel is idle. The server stops through
``/api/shutdown`` (kernels first); any process left is killed by its pid.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = "apt-get update && apt-get install -y chromium"


def find_chromium() -> str | None:
    """$EXPKIT_CHROMIUM, else Debian's /usr/bin/chromium (or a Chrome/Chromium on PATH)."""
    explicit = os.environ.get("EXPKIT_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


#: Where screenshots go: $EXPKIT_SHOTS, else build/browser/ in the project (git-ignored).
SHOTS = Path(os.environ.get("EXPKIT_SHOTS", Path(__file__).resolve().parents[2] / "build" / "browser"))


def _expect():
    from playwright.sync_api import expect

    return expect

# -----------------------------------------------------------------------------------
# A throw-away JupyterLab server
# -----------------------------------------------------------------------------------
# Per-test user settings: no "Would you like to get notified about official Jupyter
# news?" toast (it sits over the bottom right of the notebook), every cell attached to
# the DOM (the default windowing mode 'contentVisibility' may leave off-screen cells
# unrendered, which breaks DOM assertions), no restart confirmation.
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/sessionDialogs.jupyterlab-settings": {
        "skipKernelRestartDialog": True},
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    """`jupyter lab` on a free port of 127.0.0.1 with a random token; settings,
    workspaces and runtime files under `home`, so nothing of ~/.jupyter leaks in."""

    root: Path
    home: Path
    env: dict = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    started_in: float = 0.0

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """Browser URL; the token in the query string logs the browser in (a cookie)."""
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        req = urllib.request.Request(f"{self.base}/api/{path.lstrip('/')}", method=method,
                                     data=b"" if method == "POST" else None,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
            return resp.status, (json.loads(body) if body else None)

    def command(self) -> list[str]:
        settings, workspaces = self.home / "user-settings", self.home / "workspaces"
        return [sys.executable, "-m", "jupyterlab", "--no-browser",
                f"--ServerApp.ip={self.host}",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",             # fail, don't drift to another port
                f"--IdentityProvider.token={self.token}",  # ServerApp.token: deprecated in 2.x
                f"--ServerApp.root_dir={self.root}",
                "--ServerApp.allow_root=True",            # CI runs as root
                "--ServerApp.terminals_enabled=False",
                "--LabApp.expose_app_in_browser=True",    # window.jupyterapp (commands, state)
                "--LabApp.news_url=None",                 # no announcement feed
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",    # no PyPI queries
                f"--LabApp.user_settings_dir={settings}",
                f"--LabApp.workspaces_dir={workspaces}"]

    def start(self, timeout: float = 90.0, attempts: int = 3) -> "LabServer":
        settings = self.home / "user-settings"
        for rel, values in USER_SETTINGS.items():
            (settings / rel).parent.mkdir(parents=True, exist_ok=True)
            (settings / rel).write_text(json.dumps(values))
        for sub in ("workspaces", "runtime"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1", "MPLBACKEND": "Agg",
               "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(settings),
               "JUPYTERLAB_WORKSPACES_DIR": str(self.home / "workspaces"), **self.env}
        env.pop("JUPYTER_PORT", None)
        env = {k: v for k, v in env.items() if v is not None}  # None in self.env: unset it
        error = None
        for attempt in range(attempts):  # the port was taken between free_port() and bind
            self.port = free_port(self.host)
            self.log_path = self.home / f"lab-{attempt}.log"
            t0 = time.perf_counter()
            with open(self.log_path, "wb") as log:
                # own process group for the server (kernels get their own groups from
                # jupyter_client: stop() remembers their pids and checks them)
                self.proc = subprocess.Popen(self.command(), cwd=self.root, env=env,
                                             stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            try:
                self._wait_ready(timeout)
            except RuntimeError as exc:
                error = exc
                self.stop()
                if "is not available" not in self.log_path.read_text(errors="replace"):
                    break
            else:
                self.started_in = time.perf_counter() - t0
                return self
        raise error

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            try:
                status, body = self.api("status", timeout=2)
                if status == 200 and body and "started" in body:
                    return
            except (urllib.error.URLError, OSError):  # not listening yet
                pass
            time.sleep(0.1)  # poll interval of a condition wait
        raise RuntimeError(f"jupyter lab did not answer /api/status within {timeout:.0f} s:\n"
                           + self.log_path.read_text(errors="replace")[-3000:])

    def children(self) -> list[int]:
        try:
            import psutil
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except Exception:  # noqa: BLE001 - psutil missing or server gone
            return []

    def stop(self, timeout: float = 20.0) -> dict:
        """POST /api/shutdown (kernels first, then the server); SIGTERM, then SIGKILL
        to the server's process group if it does not exit; SIGKILL to any child
        (kernel) still alive after that. Returns how it went."""
        info = {"how": None, "seconds": 0.0, "leftover": []}
        if self.proc is None:
            return info
        t0 = time.perf_counter()
        kids = self.children()
        if self.proc.poll() is None:
            try:
                self.api("shutdown", method="POST", timeout=timeout)
                info["how"] = "api/shutdown"
                self.proc.wait(timeout)
            except Exception:  # noqa: BLE001 - no answer or still running: signals
                for sig, how in ((signal.SIGTERM, "SIGTERM"), (signal.SIGKILL, "SIGKILL")):
                    info["how"] = how
                    try:
                        os.killpg(self.proc.pid, sig)
                        self.proc.wait(10)
                        break
                    except ProcessLookupError:
                        break
                    except subprocess.TimeoutExpired:
                        continue
        try:
            import psutil
            info["leftover"] = [p for p in kids if psutil.pid_exists(p)
                                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        except Exception:  # noqa: BLE001
            pass
        for pid in info["leftover"]:  # kernels run in process groups of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        info["seconds"] = round(time.perf_counter() - t0, 2)
        self.proc = None
        return info


# -----------------------------------------------------------------------------------
# JupyterLab page helpers
# -----------------------------------------------------------------------------------
# Ready: notebook context loaded, kernel connected and idle, every cell in the DOM.
# (The toolbar's .jp-Notebook-ExecutionIndicator[data-status=idle] is NOT enough: it
# says "idle" before the session exists, then goes initializing/connecting/idle.)
READY_JS = """(path) => {
  if (document.querySelector('.jp-Dialog')) return 'dialog';
  const app = window.jupyterapp, w = app && app.shell.currentWidget;
  if (!w || !w.context || w.context.path !== path || !w.context.isReady || !w.sessionContext) return false;
  const sc = w.sessionContext, k = sc.session && sc.session.kernel;
  if (!(sc.isReady && k && k.connectionStatus === 'connected' && k.status === 'idle')) return false;
  return w.node.querySelectorAll('.jp-Cell').length === w.content.model.cells.length ? 'ready' : false;
}"""

# Execution state: prompts as shown, kernel status, first error output in the model.
STATE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const prompts = [...w.node.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.innerText.trim());
  let error = null;
  const cells = w.content.model.cells;
  for (let i = 0; i < cells.length && !error; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    for (const o of c.outputs.toJSON())
      if (o.output_type === 'error') { error = {cell: i, ename: o.ename, evalue: o.evalue}; break; }
  }
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return {prompts, kernel: k ? k.status : 'none', error};
}"""
CHANGED_JS = "(prev) => { const s = (" + STATE_JS + ")(); const sig = JSON.stringify([s.prompts, s.kernel]);" \
             " return (sig !== prev || s.error) ? {...s, sig} : false }"

# Widget outputs: how many outputs the model says are widget views, how many the DOM
# shows as widgets, and outputs whose text is a widget's repr or a widget error.
WIDGETS_JS = r"""() => {
  const w = window.jupyterapp.shell.currentWidget, cells = w.content.model.cells;
  let expected = 0;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type === 'code') for (const o of c.outputs.toJSON())
      if (o.data && o.data['application/vnd.jupyter.widget-view+json']) expected++;
  }
  const outs = [...w.node.querySelectorAll('.jp-OutputArea-output')];
  const rendered = outs.filter(e => e.querySelector(':scope > .jupyter-widgets')).length;
  const asText = outs.map(e => e.innerText).filter(t =>
    /\b(VBox|HBox|Box|[A-Z]\w*)\(children=|Error displaying widget|Loading widget|model not found/.test(t))
    .map(t => t.slice(0, 200));
  return {expected, rendered, asText};
}"""


def handle_dialog(page) -> str | None:
    """Accept a 'Select Kernel' dialog with the preselected kernel; fail on others."""
    dialog = page.locator(".jp-Dialog")
    if not dialog.count():
        return None
    title = dialog.locator(".jp-Dialog-header").inner_text().strip()
    if title == "Select Kernel":
        dialog.locator("button.jp-mod-accept").click()
        _expect()(dialog).to_have_count(0)
        getattr(page, "dialogs_accepted", []).append(title)
        return title
    page.screenshot(path=str(SHOTS / "unexpected_dialog.png"))
    raise AssertionError(f"unexpected JupyterLab dialog: {dialog.inner_text()[:500]}")


def open_notebook(page, lab: LabServer, path: str, timeout_ms: int = 120_000) -> float:
    """Open `path` in JupyterLab (`?reset`: without tabs restored from the workspace)
    and wait until its kernel is connected and idle."""
    t0 = time.perf_counter()
    page.goto(lab.url(f"lab/tree/{path}?reset"))
    while True:
        state = page.wait_for_function(READY_JS, arg=path, timeout=timeout_ms, polling=100).json_value()
        if state == "ready":
            return time.perf_counter() - t0
        handle_dialog(page)


def run_all_cells(page, timeout_s: float = 600, via: str = "menu") -> list[tuple[float, list]]:
    """Run > Run All Cells (or the command), then wait until every code cell shows
    an execution count and the kernel is idle; fails at the first error output.
    Returns the timeline of prompt changes [(seconds, prompts), ...]."""
    state = page.evaluate(STATE_JS)
    if any(p != "[ ]:" for p in state["prompts"]):  # stale counts would look "done"
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
        _expect()(page.locator(".jp-CodeCell .jp-InputPrompt").filter(
            has_text=re.compile(r"\d"))).to_have_count(0)
    t0 = time.perf_counter()
    if via == "menu":
        page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
        page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
    else:
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells') }")
    timeline, sig = [], ""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining_ms = max(1000, (deadline - time.monotonic()) * 1000)
        state = page.wait_for_function(CHANGED_JS, arg=sig, timeout=remaining_ms,
                                       polling=200).json_value()
        sig = state["sig"]
        timeline.append((round(time.perf_counter() - t0, 2), state["prompts"], state["kernel"]))
        if state["error"]:
            err = state["error"]
            page.screenshot(path=str(SHOTS / "run_all_error.png"))
            raise AssertionError(f"cell {err['cell']} raised {err['ename']}: {err['evalue']}")
        if state["kernel"] == "idle" and state["prompts"] and all(
                re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"]):
            return timeline


def output_with(page, inner):
    """The single output area that contains `inner` (a locator)."""
    return page.locator(".jp-OutputArea-output").filter(has=inner)


def widget_button(scope, text: str):
    """An ipywidgets Button by its description. get_by_role(name=...) misses buttons with
    an icon: the Font Awesome glyph (CSS ::before) becomes part of the accessible name."""
    return scope.locator("button.jupyter-button").filter(has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))


def shoot(target, name: str, **kwargs) -> Path:
    """A screenshot of a page or locator into :data:`SHOTS`."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    target.screenshot(path=str(path), **kwargs)
    return path


def new_cell(page, code: str):
    """Add a cell below the last one, type ``code`` and run it in place; returns its output area.
    (Shift+Enter on the last cell would add yet another cell; insert_text gets past
    CodeMirror's auto-closing brackets.)"""
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")                     # command mode
    page.keyboard.press("b")                          # new cell below, selected
    page.keyboard.press("Enter")                      # edit mode
    page.keyboard.insert_text(code)
    page.keyboard.press("Control+Enter")
    return page.locator(".jp-Notebook .jp-CodeCell").last.locator(".jp-OutputArea-output")


def add_popup_handlers(pg) -> None:
    """Should a dialog or the news toast show up while the test acts on the page (click,
    fill, expect, wait_for...), Playwright first runs these handlers, then goes on."""
    pg.add_locator_handler(pg.locator(".jp-Dialog"), lambda _loc: handle_dialog(pg))
    pg.add_locator_handler(
        pg.locator(".Toastify__toast").filter(has_text="official Jupyter news"),
        lambda loc: loc.get_by_role("button", name="No", exact=True).click())


def new_page(browser):
    """A page in a new browser context (own cookies and storage), set up for JupyterLab."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)             # actions; a shared 2-CPU machine is slow
    _expect().set_options(timeout=60_000)      # web-first assertions
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    add_popup_handlers(pg)
    pg.console_errors = errors
    pg.dialogs_accepted = []
    return pg


