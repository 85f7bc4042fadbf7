"""The ``expkit`` command (see :mod:`expkit.cli.main`); each module adds its commands."""
from . import monitor, promote, run, runs, schedule, scoring  # noqa: F401  (they register their commands)
from .main import cli

__all__ = ["cli", "main"]


def main():
    """Console-script entry point."""
    cli.main()
