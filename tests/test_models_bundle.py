"""Model files: skops + card, sha256 check, trusted types only, identical predictions."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from expkit.errors import ModelError
from expkit.features import Featurizer
from expkit.models import bundle, load_model, save_model
from expkit.models.tournament import tournament


def frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"amount": rng.lognormal(size=n), "kind": rng.choice(["a", "b", "c"], n),
                       "score": rng.normal(size=n)})
    df["label"] = (df["score"] + (df["kind"] == "a") + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    return df


def test_plain_pipeline_round_trip(tmp_path):
    df = frame()
    X, y = df.drop(columns="label"), df["label"]
    pipe = Pipeline([("features", Featurizer()), ("model", LogisticRegression())]).fit(X, y)
    out = save_model(pipe, tmp_path / "m", card={"task": "binary", "target": "label", "classes": [0, 1]})
    card = json.loads((out / "card.json").read_text())
    assert card["sha256"] == bundle.sha256_file(out / "model.skops") and "versions" in card
    loaded = load_model(out)
    np.testing.assert_array_equal(loaded.predict_proba(df), pipe.predict_proba(X))
    np.testing.assert_array_equal(loaded.score(df), pipe.predict_proba(X)[:, 1])


def test_tournament_result_round_trip_and_tamper(tmp_path):
    df = frame(200)
    r = tournament(df, "label", n_trials=2, families=["logistic", "hist_gradient_boosting"],
                   n_jobs=1, progress=False, cv=3)
    out = save_model(r, tmp_path / "model")
    b = load_model(out / "model.skops", expected_sha256=bundle.sha256_file(out / "model.skops"))
    np.testing.assert_array_equal(b.predict_proba(df), r.best_pipeline.predict_proba(df.drop(columns="label")))
    assert b.task == "binary" and b.classes == [0, 1] and b.threshold == pytest.approx(r.threshold)
    assert b.card["family"] == r.winner and b.card["above_chance"] == r.above_chance
    assert set(b.card["reference"]["fields"]) == {"amount", "kind", "score"}
    assert b.schema.types == r.schema.types
    for key in ("task", "target", "classes", "positive_class", "threshold", "schema", "features",
                "metrics", "above_chance", "chance_test", "id_columns", "reference", "versions",
                "created", "family"):
        assert key in b.card
    pd.testing.assert_frame_equal(b.reasons(df.head(4), k=2), r.reasons(df.head(4), k=2))
    with pytest.raises(ModelError, match="sha256"):
        load_model(out, expected_sha256="0" * 64)
    data = bytearray((out / "model.skops").read_bytes())
    data[-40] ^= 0xFF
    (out / "model.skops").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(out)


def _double(x):
    return x * 2


def test_untrusted_types_are_refused(tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    df = frame()
    pipe = Pipeline([("f", FunctionTransformer(_double)), ("m", LogisticRegression())])
    pipe.fit(df[["amount"]], df["label"])
    with pytest.raises(ModelError, match="trusted"):
        save_model(pipe, tmp_path / "refused")
    # a file written by someone else with an untrusted type is refused at load
    d = tmp_path / "evil"
    d.mkdir()
    sio.dump(pipe, d / "model.skops")
    (d / "card.json").write_text(json.dumps({"sha256": bundle.sha256_file(d / "model.skops")}))
    with pytest.raises(ModelError, match="untrusted"):
        load_model(d)
    with pytest.raises(ModelError, match="no model file"):
        load_model(tmp_path / "missing")


def test_lazy_load_checks_at_once_and_loads_the_checked_bytes(tmp_path):
    df = frame()
    X, y = df.drop(columns="label"), df["label"]
    pipe = Pipeline([("features", Featurizer()), ("model", LogisticRegression())]).fit(X, y)
    out = save_model(pipe, tmp_path / "m", card={"task": "binary", "target": "label", "classes": [0, 1]})
    lazy = load_model(out, lazy=True)
    assert lazy.pipeline is None and lazy.schema is None and lazy.classes == [0, 1]
    # replaced after the check: the bytes that were checked are the ones loaded
    other = Pipeline([("features", Featurizer()), ("model", LogisticRegression(C=0.001))]).fit(X, y)
    save_model(other, tmp_path / "m")
    np.testing.assert_array_equal(lazy.load().predict_proba(df), pipe.predict_proba(X))
    assert lazy.load() is lazy  # once built, load() is a no-op
    (out / "model.skops").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="sha256"):
        load_model(out, lazy=True)


def test_sklearn_estimators_are_trusted_one_by_one():
    """What skops trusts by default (sklearn's all_estimators) is what _is_trusted accepts,
    so a scoring process can skip skops' scan of every sklearn module."""
    from sklearn.utils import all_estimators
    from skops.io._utils import get_type_name

    for _, cls in all_estimators():
        assert bundle._is_trusted(get_type_name(cls)), cls
    for name in ["sklearn.base.BaseEstimator", "sklearn.utils._testing.MinimalClassifier",
                 "sklearn.preprocessing._function_transformer.FunctionTransformer.__init__",
                 "sklearn.linear_model._base.LinearModel",  # abstract
                 "sklearn.utils.validation.check_array", "os.system", "builtins.eval"]:
        assert not bundle._is_trusted(name), name


SKIPPED_SCAN = """
import sys, numpy as np, pandas as pd
from expkit.models import bundle
bundle.skip_skops_estimator_scan()
model = bundle.load_model(sys.argv[1])
from skops.io import _trusted_types
assert _trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES == [], "the scan ran"
df = pd.read_csv(sys.argv[2])
np.save(sys.argv[3], model.predict_proba(df))
try:
    bundle.load_model(sys.argv[4])
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_load_without_skops_estimator_scan_gives_the_same_model(tmp_path):
    """``expkit score`` imports skops without its sklearn scan: the same model loads and
    predicts the same, and an untrusted type is still refused."""
    import subprocess
    import sys

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    df = frame()
    X, y = df.drop(columns="label"), df["label"]
    pipe = Pipeline([("features", Featurizer()), ("model", LogisticRegression())]).fit(X, y)
    out = save_model(pipe, tmp_path / "m", card={"task": "binary", "target": "label", "classes": [0, 1]})
    evil = Pipeline([("f", FunctionTransformer(_double)), ("m", LogisticRegression())])
    evil.fit(df[["amount"]], df["label"])
    (tmp_path / "evil").mkdir()
    sio.dump(evil, tmp_path / "evil" / "model.skops")
    (tmp_path / "evil" / "card.json").write_text(
        json.dumps({"sha256": bundle.sha256_file(tmp_path / "evil" / "model.skops")}))
    df.to_csv(tmp_path / "rows.csv", index=False)
    proc = subprocess.run([sys.executable, "-c", SKIPPED_SCAN, str(out), str(tmp_path / "rows.csv"),
                           str(tmp_path / "p.npy"), str(tmp_path / "evil")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), pipe.predict_proba(X))
    assert proc.stdout.startswith("ModelError") and "untrusted" in proc.stdout


TRUST_LISTS = """
import json, sys
import pandas
from expkit.models import bundle
if sys.argv[1] == "indexed":
    bundle.skip_skops_estimator_scan()
    bundle._skops_io()
else:
    import sklearn.utils
    sklearn.utils.all_estimators = lambda *a, **k: []  # the one list the fast import skips
    import skops.io
from skops.io import _trusted_types, _utils
assert _utils.whichmodule.__qualname__ == "whichmodule", "the index outlived the import"
json.dump({k: v for k, v in vars(_trusted_types).items() if k.endswith("_TYPE_NAMES")}, sys.stdout)
"""


def test_skops_imported_with_the_module_index_trusts_the_same_types():
    """A scoring process finds scipy's ufuncs from an index of the loaded modules instead
    of skops' getattr on every module: every default trust list comes out the same."""
    import subprocess
    import sys

    def lists(how):
        proc = subprocess.run([sys.executable, "-c", TRUST_LISTS, how], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    indexed, scanned = lists("indexed"), lists("scanned")
    assert len(indexed["SCIPY_UFUNC_TYPE_NAMES"]) > 100 and len(indexed["NUMPY_UFUNC_TYPE_NAMES"]) > 50
    assert indexed == scanned


SCIPY_DOCS = """
import sys
import pandas
from expkit.models import bundle
bundle.skip_skops_estimator_scan()
bundle._skops_io()
import scipy.stats
from scipy._lib import _array_api, _docscrape
assert _array_api.FunctionDoc is _docscrape.FunctionDoc, "the stand-in outlived the import"
assert "skops.io" in sys.modules and "scipy.stats" in sys.modules
print(scipy.stats.ttest_ind.__doc__)
print(round(float(scipy.stats.norm.cdf(1.0)), 4))
"""


def test_a_scoring_process_imports_scipy_without_parsing_its_docstrings():
    """scipy's ``xp_capabilities`` parses the docstring of every ``scipy.stats`` function
    at import (~0.5 s of a scoring process's start-up); a process that only scores
    leaves them unparsed: same functions, docstrings without the array-API note."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", SCIPY_DOCS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *doc, cdf = proc.stdout.rstrip("\n").split("\n")
    assert cdf == "0.8413"
    doc = "\n".join(doc)
    assert "Parameters" in doc and "Returns" in doc  # the docstring is there ...
    # ... without the note scipy appends (it is there when scipy is imported as usual)
    import scipy.stats

    assert "Array API Standard Support" in scipy.stats.ttest_ind.__doc__
    assert "Array API Standard Support" not in doc, "scipy no longer parses with FunctionDoc: drop UnparsedDoc"


def test_unparsed_doc_hands_any_other_use_to_the_real_parser():
    from scipy._lib._docscrape import FunctionDoc

    from expkit.models._scoring_import import unparsed_docs

    def f(x):
        """Summary line.

        Parameters
        ----------
        x : int
            A number.
        """

    doc = unparsed_docs(FunctionDoc)(f)
    doc["Notes"].append("dropped")
    assert str(doc) == "\n" + f.__doc__
    assert doc.get_func()[1] == "f"  # not a section lookup or str(): the real parser answers


def test_indexed_whichmodule_answers_as_the_scan_does():
    """Objects without ``__module__``, held by plain modules, by modules that compute
    attributes, by none: the first holder in ``sys.modules`` order, as skops' own scan."""
    import sys
    import types

    import numpy as np
    import scipy.special
    from skops.io._utils import whichmodule

    from expkit.models._scoring_import import indexed_whichmodule

    lazy = types.ModuleType("expkit_test_lazy")
    stray = type("Stray", (), {"__module__": None})()  # no module of its own, like a ufunc
    lazy.__getattr__ = lambda name: stray if name == "stray" else (_ for _ in ()).throw(AttributeError(name))
    sys.modules["expkit_test_lazy"] = lazy
    try:
        fast = indexed_whichmodule(whichmodule)
        for name in ["expit", "erf", "gammaln", "ndtr"]:
            obj = getattr(scipy.special, name)
            assert fast(obj, name) == whichmodule(obj, name)
        assert fast(stray, "stray") == whichmodule(stray, "stray") == "expkit_test_lazy"
        assert fast(object(), "nowhere") == whichmodule(object(), "nowhere") == "__main__"
        assert fast(np.add, "add") == whichmodule(np.add, "add")
    finally:
        del sys.modules["expkit_test_lazy"]
