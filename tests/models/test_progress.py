"""The tournament's progress bar: fills against the budget, moves while a slow family fits."""
from __future__ import annotations

import io
import re
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from expkit.models import families
from expkit.models.progress import REFRESH, Bar
from expkit.models.tournament import tournament


class SlowLogistic(LogisticRegression):
    """A logistic regression that takes its time (a slow family)."""

    def fit(self, X, y, sample_weight=None):
        time.sleep(0.7)
        return super().fit(X, y, sample_weight=sample_weight)


@pytest.fixture
def slow_family():
    families.register_family("slow_test", lambda p, task, seed: SlowLogistic(C=p["C"]),
                             lambda t: {"C": t.suggest_float("C", 0.1, 10, log=True)},
                             default={"C": 1.0})
    yield "slow_test"
    families.unregister_family("slow_test")


def frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "kind": rng.choice(["a", "b"], n),
                       "tenant": np.repeat(["acme", "globex"], n // 2)})
    df["y"] = (df["x"] + rng.normal(scale=0.7, size=n) > 0).astype(int)
    return df


def lines(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"[\r\n]", text) if s.strip()]


def test_bar_fills_against_the_budget_between_trials():
    out = io.StringIO()
    bar = Bar(budget=20, n_trials=None, started=time.monotonic(), metric="roc_auc", file=out)
    time.sleep(1.2 + REFRESH)  # no trial finished: the bar moves on its own
    assert bar.bar.total == 20 and bar.bar.n >= 1.2
    assert "0 trials" in bar.postfix() and "s left" in bar.postfix()
    bar.trial(3, 0.81234, "logistic")
    assert re.fullmatch(r"3 trials, best roc_auc 0\.8123 \(logistic\), \d s of 20 s, 1\d s left", bar.postfix())
    bar.close()
    assert bar.bar.n == bar.bar.total < 20  # filled with what was used: a green bar in notebooks
    assert re.search(r"done in \d s of 20 s", lines(out.getvalue())[-1])


def test_bar_counts_trials_when_they_are_the_stop_rule():
    out = io.StringIO()
    bar = Bar(budget=60, n_trials=4, started=time.monotonic(), metric="r2", label="acme", file=out)
    bar.trial(1, 0.5, "ridge")
    assert bar.bar.total == 4 and bar.bar.n == 1
    bar.close(finished=False)  # an error: left where it was
    assert bar.bar.n == 1 and bar.bar.total == 4
    assert lines(out.getvalue())[-1].startswith("tournament [acme]:  25%")


def test_tournament_bar_moves_while_a_slow_family_fits(slow_family, capsys):
    tournament(frame().drop(columns="tenant"), "y", families=[slow_family], n_trials=2, cv=3,
               n_jobs=1, budget=60, seed=0, ensemble=False)
    shown = lines(capsys.readouterr().err)
    during_first = [s for s in shown if "0/2 trials" in s]
    # a trial of 3 folds takes > 2 s: the bar was redrawn with the time while it ran
    seconds = {int(m.group(1)) for s in during_first for m in [re.search(r"(\d+) s of 60 s", s)] if m}
    assert len(during_first) >= 3 and max(seconds) >= 1, shown[:5]
    assert any("1/2 trials" in s and "best roc_auc" in s and f"({slow_family})" in s for s in shown)
    assert "done in" in shown[-1] and "100%" in shown[-1]


def test_per_tenant_bars_name_the_tenant(capsys):
    tournament(frame(160), "y", tenant="tenant", families=["logistic"], n_trials=1, cv=3, n_jobs=1,
               seed=0, ensemble=False)
    shown = lines(capsys.readouterr().err)
    assert any(s.startswith("tournament [acme]:") for s in shown)
    assert any(s.startswith("tournament [globex]:") for s in shown)
