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
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .. import _lazy
from ..errors import ModelError
from ..files import changed, file_digests, versions, write_bytes, write_json

MODEL_FILE = "model.skops"
CARD_FILE = "card.json"

#: The types an expkit model file may hold beyond what skops trusts by default (skops
#: trusts scikit-learn's public estimators and basic numpy/scipy types): expkit's own
#: transformers and the scikit-learn, scipy internals the built-in families hold. A file
#: for which ``skops.io.get_untrusted_types`` names anything else is refused.
TRUSTED_TYPES = frozenset({
    # expkit
    "expkit.features.featurizer.Featurizer",
    "expkit.features.transmogrify.Transmogrifier",
    "expkit.features.sanity.SanityChecker",
    "expkit.features.numeric.NumericVectorizer",
    "expkit.features.categorical.CategoricalVectorizer",
    "expkit.features.text.TextVectorizer",
    "expkit.features.text.Tokens",
    "expkit.features.contact.EmailVectorizer",
    "expkit.features.contact.UrlVectorizer",
    "expkit.features.contact.PhoneVectorizer",
    "expkit.features.dates.DateVectorizer",
    "expkit.models.families.DenseTopK",
    "expkit.models.calibration.CalibratedModel",
    "expkit.models.ensemble.EnsembleModel",
    "expkit.schema.ColumnType",
    "expkit.schema.Schema",
    # LightGBM (a booster is its model text), XGBoost (optional)
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
    "xgboost.sklearn.XGBRegressor",
    "collections.OrderedDict",
    # scikit-learn and scipy internals (histogram boosting's categorical preprocessing
    # holds a functools.partial of check_array; partial is trusted only with trusted functions)
    "functools.partial",
    "sklearn.utils.validation.check_array",
    "scipy.sparse._csr.csr_matrix",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.KFold",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.tree._tree.Tree",
})
_extra_trusted: set[str] = set()


def trust_types(*names: str) -> None:
    """Accept more types in model files (e.g. what a family added with
    :func:`~expkit.models.families.register_family` needs); full names as skops reports
    them (``module.Class``). Only for types whose construction runs no arbitrary code."""
    _extra_trusted.update(names)


def trusted_types() -> frozenset[str]:
    """Every type expkit accepts in model files: :data:`TRUSTED_TYPES` and those added with
    :func:`trust_types` in this process (scoring hands them to its worker processes)."""
    return TRUSTED_TYPES | _extra_trusted


def refused(names) -> list[str]:
    """Those of ``names`` (what ``skops.io.get_untrusted_types`` reports for a file) that
    expkit does not trust either."""
    return [t for t in names if t not in TRUSTED_TYPES and t not in _extra_trusted]


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
    data = sio.dumps(pipeline, compression=zipfile.ZIP_DEFLATED)  # feature names compress ~30x
    bad = refused(sio.get_untrusted_types(data=data))
    if bad:
        raise ModelError(f"the model contains types outside expkit's trusted list: {bad}",
                         hint="if they are safe, trust them with expkit.models.bundle.trust_types(...)")
    write_bytes(directory / MODEL_FILE, data)
    full["sha256"] = hashlib.sha256(data).hexdigest()
    full["model_file"] = MODEL_FILE
    write_json(directory / CARD_FILE, full)
    return directory


def load_model(path, expected_sha256: str | None = None, *, lazy: bool = False,
               digests: dict | None = None) -> "ModelBundle":
    """Load a saved model directory (or its ``model.skops`` file).

    Parameters
    ----------
    path : path
        The model directory or the ``.skops`` file inside it.
    expected_sha256 : str, optional
        The digest the model file must have; otherwise the card's recorded digest
        is checked. Ignored when ``digests`` is given.
    digests : dict, optional
        ``{file: sha256}`` of every file the folder must hold, as
        :func:`expkit.files.file_digests` recorded it (the registry does at promotion):
        any file changed, added or missing is refused, by name. The model file and card
        are checked from the very bytes that are then used.
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
    card_bytes = card_path.read_bytes() if card_path.is_file() else None
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digests is not None:
        actual = file_digests(directory)
        actual[file.relative_to(directory).as_posix()] = digest
        if card_bytes is not None:
            actual[CARD_FILE] = hashlib.sha256(card_bytes).hexdigest()
        differences = changed(digests, actual)
        if differences:
            raise ModelError(f"model folder {str(directory)!r} does not match the digest recorded when it "
                             f"was promoted: {', '.join(differences)}",
                             hint="the folder was changed after promotion; restore the file(s), or "
                                  "promote a retrained model")
    try:
        card = json.loads(card_bytes) if card_bytes is not None else {}
    except ValueError as exc:
        raise ModelError(f"model card {str(card_path)!r} is not valid JSON ({exc})",
                         hint="restore it, or retrain and save the model again") from None
    if not isinstance(card, dict):
        raise ModelError(f"model card {str(card_path)!r} does not hold a JSON object",
                         hint="restore it, or retrain and save the model again")
    expected = card.get("sha256") if digests is not None else expected_sha256 or card.get("sha256")
    if expected and digest != expected:
        raise ModelError(f"model file {str(file)!r} has sha256 {digest[:12]}…, expected {expected[:12]}…",
                         hint="the file was changed after it was saved; restore it or retrain")
    bundle = ModelBundle(None, card, directory, data=data, file=file)
    return bundle if lazy else bundle.load()


class ModelBundle:
    """A loaded model: the pipeline and its card.

    Attributes
    ----------
    pipeline : sklearn Pipeline (raw DataFrame in)
    card : dict
    directory : Path
    """

    def __init__(self, pipeline, card: dict, directory=None, *, data: bytes | None = None, file=None):
        self.pipeline = pipeline
        self.card = card
        self.directory = Path(directory) if directory is not None else None
        self._data, self._file = data, file  # checked bytes, built by load()

    def load(self) -> "ModelBundle":
        """Build the pipeline of a bundle from ``load_model(..., lazy=True)`` (no-op once built).

        Only types on expkit's allow-list are accepted (ModelError otherwise).
        """
        if self.pipeline is not None or self._data is None:
            return self
        import skops.io as sio

        where = str(self._file)
        try:
            named = sio.get_untrusted_types(data=self._data)
        except Exception as exc:  # not a skops archive
            raise ModelError(f"cannot load {where!r}: {exc}", hint="the file may be corrupt") from exc
        bad = refused(named)
        if bad:
            raise ModelError(f"model file {where!r} contains untrusted types: {bad}",
                             hint="only models saved by expkit can be loaded; retrain or inspect the file")
        try:
            self.pipeline = sio.loads(self._data, trusted=named)
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
        from .calibration import scores_of
        from .insights import Explainer
        baseline = self.card.get("baseline")
        if baseline is None:
            raise ModelError("this model's card has no baseline values for reasons",
                             hint="save the model from a tournament result")
        return Explainer(baseline).reasons(lambda d: scores_of(self.pipeline, d, self.task),
                                           self._inputs(df), k)

    def __repr__(self) -> str:
        return (f"ModelBundle(task={self.task!r}, family={self.card.get('family')!r}, "
                f"target={self.card.get('target')!r})")


__all__ = ["save_model", "load_model", "ModelBundle", "TRUSTED_TYPES", "trust_types"]


#: Names that moved elsewhere (deprecated aliases for one release).
__getattr__ = _lazy.moved(__name__, {
    'sha256_file': 'expkit.files',
})
