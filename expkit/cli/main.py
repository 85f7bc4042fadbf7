"""The ``expkit`` command: a thin click layer over expkit's functions.

Every expkit error becomes one line ``error: <message>`` on stderr and the
error's exit code; usage mistakes print the usage and one error line (exit 2);
tracebacks appear only with ``--debug``. SIGTERM unwinds like Ctrl-C (exit 143).
One module per command group: :mod:`~expkit.cli.run` (run, demo),
:mod:`~expkit.cli.runs`, :mod:`~expkit.cli.promote` (promote, models),
:mod:`~expkit.cli.scoring` (score, feedback), :mod:`~expkit.cli.monitor` and
:mod:`~expkit.cli.schedule` (schedule, alerts).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import traceback

import click

from ..errors import ExpkitError, Terminated


def _terminate(signum, frame):
    raise Terminated()


class ExpkitGroup(click.Group):
    """A click group that turns errors into one line (tracebacks only with --debug)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = sys.argv[1:] if args is None else list(args)
        debug = "--debug" in argv
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            code = super().main(args=argv, prog_name=prog_name or "expkit", complete_var=complete_var,
                                standalone_mode=False, **extra)
        except ExpkitError as exc:
            code = _fail(str(exc), exc.exit_code, debug)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            code = exc.exit_code
        except click.UsageError as exc:
            if exc.ctx is not None:
                click.echo(exc.ctx.get_usage(), err=True)
            code = _fail(exc.format_message(), exc.exit_code, debug)
        except click.ClickException as exc:
            code = _fail(exc.format_message(), exc.exit_code, debug)
        except (click.Abort, KeyboardInterrupt) as exc:  # click turns KeyboardInterrupt into Abort
            if isinstance(exc, Terminated) or isinstance(exc.__context__, Terminated):
                code = _fail("terminated", 143, debug)
            else:
                code = _fail("interrupted", 130, debug)
        except Exception as exc:  # a bug: still one line unless --debug
            code = _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", 1, debug)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)  # e.g. when invoked inside a test process
        sys.exit(code if isinstance(code, int) else 0)


def cluster_engine(cluster):
    """The engine of ``--cluster`` (or $EXPKIT_DASK_SCHEDULER), None for this machine.

    A local cluster's worker processes are started ignoring SIGINT: a terminal's Ctrl-C
    goes to the whole process group and would kill their event loops (tracebacks, work
    lost); the command stops their work itself, through a stop flag. Ctrl-C during the
    second or two it takes to start them is ignored too."""
    from ..engine import cluster_engine as find

    with _ctrl_c_ignored():
        return find(cluster)


@contextlib.contextmanager
def _ctrl_c_ignored():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by processes started here
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _quiet(record: logging.LogRecord) -> bool:
    """Without --debug: no warnings of a local cluster's nannies about workers slow to exit
    when stopped, no asyncio tracebacks (a task that a stopped notebook run left behind
    fails when its kernel is shut down, after the command has said why it stopped), and
    not papermill's line about a kernel that died at start (the run's own line says why
    it failed, or that its kernel is started again)."""
    if record.name.startswith("distributed"):
        return record.levelno >= logging.ERROR
    if record.name == "papermill" and str(record.msg).startswith("Error occurred while starting new kernel"):
        return False
    return record.name != "asyncio"


def _fail(message: str, code: int, debug: bool) -> int:
    if debug and sys.exc_info()[0] is not None:
        traceback.print_exc()
    click.echo("error: " + " ".join(str(message).split()), err=True)  # always one line
    return code


runs_dir_option = click.option("--runs-dir", type=click.Path(file_okay=False), default=None,
                               help="Runs folder (default $EXPKIT_RUNS, else runs/ at the project root).")
cluster_option = click.option("--cluster", default=None, metavar="ADDRESS|local:N",
                              help="Run on a Dask cluster: a scheduler address (tcp://host:8786), or local:N "
                                   "for a local cluster of N processes (default $EXPKIT_DASK_SCHEDULER).")


@click.group(cls=ExpkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show debug logs and full tracebacks.")
@click.version_option(package_name="expkit")
def cli(debug):
    """expkit: explore, run model tournaments per tenant, promote, score and monitor."""
    level = logging.DEBUG if debug else logging.WARNING
    handler = logging.StreamHandler()
    handler.setLevel(level)  # libraries that set their own loggers to INFO (Dask) stay quiet too
    if not debug:
        handler.addFilter(_quiet)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", handlers=[handler])
