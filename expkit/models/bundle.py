"""Saving and loading models: skops file + model card, never pickle.

A model directory holds ``model.skops`` (the sklearn Pipeline: Featurizer then
the calibrated estimator) and ``card.json`` (task, classes, threshold, schema,
features, metrics, verdict, reference statistics for drift, versions, the
file's sha256). Loading checks the sha256 and accepts only the types on an
explicit allow-list (expkit's own transformers plus the sklearn, numpy and
scipy types our pipelines use); a file holding anything else is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ModelError
from .result import jsonable, versions

MODEL_FILE = "model.skops"
CARD_FILE = "card.json"

#: Types (beyond skops' defaults) a saved expkit model may contain. Anything
#: else found in a file makes :func:`load_model` refuse it.
TRUSTED_TYPES = frozenset({
    "scipy.sparse._csr.csr_matrix",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.KFold",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.tree._tree.Tree",
    "expkit.schema.ColumnType",
    "expkit.schema.Schema",
})

#: Besides :data:`TRUSTED_TYPES`, a model may hold expkit's own transformers:
#: sklearn estimator classes defined in these modules (the Featurizer and its
#: vectorizers, the families' helpers). Nothing else from expkit is accepted.
TRUSTED_MODULES = ("expkit.features", "expkit.models.families", "expkit.models.calibration")


def sha256_file(path) -> str:
    """The sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_trusted(name: str) -> bool:
    """Whether a type name found in a model file is on expkit's allow-list.

    Besides :data:`TRUSTED_TYPES` and expkit's own estimators, a public, concrete
    scikit-learn estimator class is accepted: what skops trusts by default (see
    :func:`skip_skops_estimator_scan`).
    """
    if name in TRUSTED_TYPES:
        return True
    module, _, attr = name.rpartition(".")
    # the classes sklearn's all_estimators() lists: public, concrete, outside test helpers
    sklearn_estimator = (module.startswith("sklearn.") and not attr.startswith("_")
                         and attr != "BaseEstimator" and not any(
                             part in ("tests", "externals", "_testing", "estimator_checks")
                             for part in module.split(".")))
    if not sklearn_estimator and not any(module == m or module.startswith(m + ".")
                                         for m in TRUSTED_MODULES):
        return False
    import importlib
    import inspect

    from sklearn.base import BaseEstimator
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return (isinstance(obj, type) and obj.__module__ == module and issubclass(obj, BaseEstimator)
            and not inspect.isabstract(obj))


_scan_estimators = True


def skip_skops_estimator_scan() -> None:
    """Have skops imported, when a model is loaded, without it listing every sklearn estimator.

    On import, skops builds its default trust list with sklearn's ``all_estimators()``,
    which imports every sklearn module: about 1.5 s of a scoring command's start-up.
    expkit does not need that list: :func:`_is_trusted` checks each type a file names,
    sklearn estimators included, one by one. A process that calls this trusts no
    sklearn type by default in *any* skops load, which is why only processes that just
    score call it (``expkit score`` and the model host of :mod:`expkit.workers`). Its
    search for scipy's ufuncs is also answered from an index (same list, ~0.5 s less), and
    scipy, if not imported yet, leaves its docstrings unparsed (~0.5 s less; see
    :mod:`expkit.models._scoring_import`). No effect once skops.io is imported.
    """
    global _scan_estimators
    _scan_estimators = False


def _skops_io():
    """The ``skops.io`` module (see :func:`skip_skops_estimator_scan`)."""
    if _scan_estimators or "skops.io" in sys.modules:
        import skops.io
        return skops.io
    from ._scoring_import import indexed_whichmodule, patched_on_import, unparsed_docs

    with patched_on_import("scipy._lib._array_api", "FunctionDoc", unparsed_docs):
        import sklearn.utils

        real = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = lambda *args, **kwargs: []
        try:
            with patched_on_import("skops.io._utils", "whichmodule", indexed_whichmodule):
                import skops.io
        finally:
            sklearn.utils.all_estimators = real
    return skops.io


def preload() -> None:
    """Import what loading any expkit model needs (scikit-learn, skops, expkit's feature
    pipeline and calibration), e.g. in a process that will receive the model later."""
    _skops_io()
    import sklearn.pipeline  # noqa: F401

    from ..features import featurizer  # noqa: F401
    from . import calibration  # noqa: F401


def save_model(model, directory, card: dict | None = None) -> Path:
    """Save a model as ``directory/model.skops`` plus ``directory/card.json``.

    Parameters
    ----------
    model : TournamentResult or sklearn Pipeline
        A tournament result (its ``best_pipeline`` and ``card()`` are used) or
        a fitted pipeline that takes the raw DataFrame.
    directory : path
        Created if needed; existing files are replaced.
    card : dict, optional
        Card entries (merged over the result's own card).

    Returns
    -------
    Path
        ``directory``.
    """
    import skops.io as sio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pipeline = getattr(model, "best_pipeline", model)
    if not hasattr(pipeline, "predict"):
        raise ModelError(f"cannot save a {type(model).__name__}",
                         hint="pass a TournamentResult or a fitted sklearn Pipeline")
    full = model.card() if hasattr(model, "card") else {}
    full.update(card or {})
    full.setdefault("versions", versions())
    full.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    path = directory / MODEL_FILE
    tmp = directory / (MODEL_FILE + ".tmp")
    sio.dump(pipeline, tmp, compression=zipfile.ZIP_DEFLATED)  # feature names compress ~30x
    untrusted = [t for t in sio.get_untrusted_types(file=tmp) if not _is_trusted(t)]
    if untrusted:
        tmp.unlink()
        raise ModelError(f"the model contains types outside expkit's trusted list: {untrusted}",
                         hint="add them to expkit.models.bundle.TRUSTED_TYPES if they are safe")
    os.replace(tmp, path)
    full["sha256"] = sha256_file(path)
    full["model_file"] = MODEL_FILE
    (directory / CARD_FILE).write_text(json.dumps(jsonable(full), indent=2), encoding="utf-8")
    return directory


def load_model(path, expected_sha256: str | None = None, *, lazy: bool = False) -> "ModelBundle":
    """Load a saved model directory (or its ``model.skops`` file).

    Parameters
    ----------
    path : path
        The model directory or the ``.skops`` file inside it.
    expected_sha256 : str, optional
        The digest the file must have (e.g. from the registry); otherwise the
        card's recorded digest is checked.
    lazy : bool
        Read the card and check the file's digest now, but build the pipeline only
        on :meth:`ModelBundle.load` (scikit-learn's import takes seconds; a caller
        can do other work first). The bytes that were checked are the bytes loaded.

    Raises
    ------
    ModelError
        File missing, digest mismatch, or a type outside the trusted list.
    """
    path = Path(path)
    directory, file = (path, path / MODEL_FILE) if path.is_dir() else (path.parent, path)
    if not file.is_file():
        raise ModelError(f"no model file at {str(file)!r}",
                         hint="pass the model directory written by save_model / Run.save_model")
    card_path = directory / CARD_FILE
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = expected_sha256 or card.get("sha256")
    if expected and digest != expected:
        raise ModelError(f"model file {str(file)!r} has sha256 {digest[:12]}…, expected {expected[:12]}…",
                         hint="the file was changed after it was saved; restore it or retrain")
    bundle = ModelBundle(None, card, directory)
    bundle._data, bundle._file = data, file
    return bundle if lazy else bundle.load()


class ModelBundle:
    """A loaded model: the pipeline and its card.

    Attributes
    ----------
    pipeline : sklearn Pipeline (raw DataFrame in)
    card : dict
    directory : Path
    """

    def __init__(self, pipeline, card: dict, directory=None):
        self.pipeline = pipeline
        self.card = card
        self.directory = Path(directory) if directory is not None else None
        self._data = self._file = None

    def load(self) -> "ModelBundle":
        """Build the pipeline of a bundle from ``load_model(..., lazy=True)`` (no-op once built).

        Only types on expkit's allow-list are accepted (ModelError otherwise).
        """
        if self.pipeline is not None or self._data is None:
            return self
        sio = _skops_io()

        where = str(self._file)
        try:
            untrusted = sio.get_untrusted_types(data=self._data)
        except Exception as exc:  # not a skops archive
            raise ModelError(f"cannot load {where!r}: {exc}", hint="the file may be corrupt") from exc
        refused = [t for t in untrusted if not _is_trusted(t)]
        if refused:
            raise ModelError(f"model file {where!r} contains untrusted types: {refused}",
                             hint="only models saved by expkit can be loaded; retrain or inspect the file")
        try:
            self.pipeline = sio.loads(self._data, trusted=untrusted)
        except Exception as exc:  # a corrupt archive
            raise ModelError(f"cannot load {where!r}: {exc}", hint="the file may be corrupt") from exc
        self._data = None
        return self

    @property
    def task(self) -> str:
        return self.card.get("task", "binary")

    @property
    def classes(self) -> list:
        return list(self.card.get("classes") or getattr(self.pipeline, "classes_", []))

    @property
    def threshold(self) -> float:
        return float(self.card.get("threshold", 0.5))

    @property
    def schema(self):
        from ..schema import Schema
        return Schema.from_dict(self.card["schema"]) if "schema" in self.card else None

    def _inputs(self, df: pd.DataFrame) -> pd.DataFrame:
        target = self.card.get("target")
        return df.drop(columns=[target], errors="ignore") if target else df

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Class probabilities of raw rows (classification only)."""
        if self.task == "regression":
            raise ModelError("a regression model has no class probabilities", hint="use score() or predict()")
        return self.pipeline.predict_proba(self._inputs(df))

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Binary: class at the card's threshold; multiclass: most likely class; regression: value."""
        if self.task == "binary":
            return np.where(self.score(df) >= self.threshold, self.classes[1], self.classes[0])
        return self.pipeline.predict(self._inputs(df))

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """One number per row: binary positive-class probability, multiclass
        top-class probability, regression prediction."""
        from .calibration import scores_of
        s = scores_of(self.pipeline, self._inputs(df), self.task)
        return s.max(axis=1) if s.ndim == 2 else s

    def reasons(self, df: pd.DataFrame, k: int = 3) -> pd.DataFrame:
        """Top ``k`` fields behind each row's score (leave-one-field-out)."""
        from .insights import Explainer
        from .calibration import scores_of
        baseline = self.card.get("baseline")
        if baseline is None:
            raise ModelError("this model's card has no baseline values for reasons",
                             hint="save the model from a tournament result")
        return Explainer(baseline).reasons(lambda d: scores_of(self.pipeline, d, self.task),
                                           self._inputs(df), k)

    def __repr__(self) -> str:
        return (f"ModelBundle(task={self.task!r}, family={self.card.get('family')!r}, "
                f"target={self.card.get('target')!r})")


__all__ = ["save_model", "load_model", "ModelBundle", "sha256_file", "TRUSTED_TYPES"]
