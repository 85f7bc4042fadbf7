"""pyproject.toml and environment.yml declare the same dependencies."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-only entries of environment.yml that pyproject does not list
CONDA_ONLY = {"python", "pip"}


def _normalise(requirement: str) -> tuple[str, str]:
    """('name', 'specifier') with the name normalised as in PEP 503."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)", requirement)
    assert match, f"cannot parse requirement {requirement!r}"
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    spec = re.sub(r"\s+", "", match.group(2).split(";")[0])
    return name, spec


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return dict(_normalise(r) for r in reqs)


def _environment() -> dict[str, str]:
    """conda dependencies, and pip ones for packages conda-forge does not have."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = [r for d in env["dependencies"] if isinstance(d, dict) for r in d.get("pip", []) if not r.startswith("-")]
    return {name: spec for name, spec in map(_normalise, conda + pip) if name not in CONDA_ONLY}


def test_normalise():
    assert _normalise("SQLAlchemy>=2.0") == ("sqlalchemy", ">=2.0")
    assert _normalise("scikit_learn >= 1.5") == ("scikit-learn", ">=1.5")
    assert _normalise("vaderSentiment>=3.3; python_version>'3'") == ("vadersentiment", ">=3.3")


def test_environment_mirrors_pyproject_core_and_dev_dependencies():
    declared, mirrored = _pyproject(), _environment()
    assert "pytest" in declared and "nbval" in declared  # dev extras are checked too
    assert set(declared) - set(mirrored) == set(), "missing from environment.yml"
    assert set(mirrored) - set(declared) == set(), "missing from pyproject.toml"
    differ = {n: (declared[n], mirrored[n]) for n in declared if declared[n] != mirrored[n]}
    assert differ == {}, "version bounds differ (pyproject, environment.yml)"


def test_environment_installs_the_package_itself():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip = [d for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip and "-e ." in pip[0]["pip"]
