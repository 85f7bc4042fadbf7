"""Monitoring computations on synthetic score-log records (no training needed)."""
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from expkit import drift, monitoring
from expkit.errors import ConfigError
from expkit.monitoring.thresholds import FEW_ROWS, thresholds

NOW = datetime(2025, 3, 20, 12, 0)
SCHEMA = {"spend": "numeric", "source": "categorical", "note": "text"}


def table(n=2000, seed=0, spend_scale=1.0, sources=("web", "ads", "event")):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"spend": rng.lognormal(3, 1, n) * spend_scale,
                         "source": rng.choice(list(sources), n),
                         "note": rng.choice(["hi", "call me later", "no thanks"], n)})


def scores(n=2000, seed=0, shift=0.0):
    return np.clip(np.random.default_rng(seed).beta(2, 5, n) + shift, 0, 1)


CARD = {"family": "logistic", "above_chance": True, "metrics": {"auroc": 0.80},
        "reference": drift.reference_profile(table(), SCHEMA, scores=scores())}


def batch(i, when, df, s, app="leads", tenant="acme", version="1"):
    return {"id": f"b{i}", "app": app, "tenant": tenant, "model_tenant": tenant, "version": version, "run_id": "r1",
            "rows": len(df), "started_at": when - timedelta(minutes=1), "finished_at": when,
            "score_counts": drift.score_buckets(s, normalize=False),
            "fields": drift.summarize(df, CARD["reference"])["fields"], "ids_path": None, "output": None}


def prod(app="leads", tenant="acme", version="1", promoted=NOW - timedelta(days=2), card=CARD):
    return {"app": app, "tenant": tenant, "version": version, "run_id": "r1",
            "promoted_at": promoted.isoformat(), "card": card}


RUNS = pd.DataFrame({"created": [(NOW - timedelta(days=d)).isoformat() + "+00:00" for d in (1, 3, 10, 40)],
                     "path": ["/nonexistent"] * 4})
NO_FEEDBACK = pd.DataFrame(columns=["app", "tenant", "id", "label", "loaded_at"])


def run(batches, feedback=NO_FEEDBACK, models=None, scored=None, **th):
    return monitoring.evaluate(models or [prod()], pd.DataFrame(batches), feedback, RUNS,
                               thresholds(th), NOW, scored=scored)


def test_unshifted_batch_raises_no_alert():
    res = run([batch(1, NOW - timedelta(hours=2), table(seed=1), scores(seed=1))])
    assert res.ok and res.alerts.empty
    m = res.models.iloc[0]
    assert m["status"] == "ok" and m["rows_scored"] == 2000 and m["score_psi"] < 0.1
    assert set(res.drift["field"]) == {"(score)", "spend", "source", "note"}
    assert (res.drift["level"] == "ok").all()


def test_shifted_field_and_score_are_flagged():
    res = run([batch(1, NOW - timedelta(days=1), table(seed=1), scores(seed=1)),
               batch(2, NOW - timedelta(hours=1), table(seed=2, spend_scale=10), scores(seed=2, shift=0.3))])
    assert not res.ok
    flagged = res.alerts[res.alerts["check"] == "drift"].set_index("field")
    assert flagged.loc["spend", "level"] == "alert" and flagged.loc["(score)", "level"] == "alert"
    assert "source" not in flagged.index
    m = res.models.iloc[0]
    assert m["status"] == "alert" and m["worst_field"] == "spend" and m["batches"] == 2
    # the batch history keeps the first batch clean
    assert res.batches.set_index("id").loc["b1", "max_field_psi"] < 0.1
    assert res.batches.set_index("id").loc["b2", "worst_field"] == "spend"


def test_thresholds_are_configurable_and_validated():
    b = [batch(1, NOW, table(seed=2, spend_scale=10), scores(seed=1))]
    assert not run(b).ok
    assert run(b, psi_alert=100, psi_warning=100).alerts.query("check == 'drift'").empty
    with pytest.raises(ConfigError, match="unknown threshold"):
        thresholds({"psi": 1})
    with pytest.raises(ConfigError, match="psi_warning"):
        thresholds({"psi_warning": 0.5, "psi_alert": 0.2})


def test_unseen_categories_and_fill_rate_warn():
    df = table(seed=1, sources=("web", "tv", "radio"))
    df.loc[df.index[:800], "spend"] = np.nan
    res = run([batch(1, NOW, df, scores(seed=1))])
    checks = set(res.alerts["check"])
    assert {"unseen categories", "fill rate"} <= checks
    d = res.drift.set_index("field")
    assert d.loc["source", "unseen_share"] == pytest.approx(2 / 3, abs=0.05)
    assert d.loc["spend", "fill_rate_change"] == pytest.approx(-0.4)


def test_live_auroc_drop_alerts():
    rng = np.random.default_rng(0)
    ids = [f"L{i}" for i in range(400)]
    s = rng.random(400)
    scored = pd.DataFrame({"id": ids, "score": s})
    good = pd.DataFrame({"app": "leads", "tenant": "acme", "id": ids,
                         "label": (s + rng.normal(0, 0.15, 400) > 0.5).astype(int), "loaded_at": NOW})
    bad = good.assign(label=rng.integers(0, 2, 400))
    b = [batch(1, NOW, table(seed=1), s)]
    res_good = run(b, feedback=good, scored=lambda _: scored)
    assert res_good.models.iloc[0]["live_auroc"] > 0.8 and res_good.models.iloc[0]["feedback_rows"] == 400
    assert "live auroc" not in set(res_good.alerts["check"])
    res_bad = run(b, feedback=bad, scored=lambda _: scored)
    assert res_bad.models.iloc[0]["live_auroc"] < 0.7
    assert "live auroc" in set(res_bad.alerts["check"]) and not res_bad.ok
    # too little feedback: no live AUROC, no alert
    few = run(b, feedback=bad.head(5), scored=lambda _: scored)
    assert np.isnan(few.models.iloc[0]["live_auroc"])


def test_stale_model_alerts():
    old = [batch(1, NOW - timedelta(days=9), table(seed=1), scores(seed=1))]
    res = run(old)
    assert list(res.alerts["check"]) == ["no scores"] and not res.ok
    assert run(old, stale_days=30).ok
    never = run([], models=[prod(promoted=NOW - timedelta(days=20))])
    assert "no scores" in set(never.alerts["check"])
    fresh = run([], models=[prod(promoted=NOW - timedelta(days=1))])
    assert fresh.ok and fresh.drift.empty


def test_kpis():
    b = [batch(1, NOW - timedelta(hours=3), table(n=2400, seed=1), scores(n=2400, seed=1)),
         batch(2, NOW - timedelta(days=3), table(n=700, seed=1), scores(n=700, seed=1)),
         batch(3, NOW - timedelta(days=30), table(n=500, seed=1), scores(n=500, seed=1)),
         batch(4, NOW - timedelta(hours=1), table(n=100), scores(n=100), tenant="globex")]
    half = dict(CARD, above_chance=False)
    res = run(b, models=[prod(), prod(tenant="globex", card=half)])
    k = res.kpis.set_index("kpi")["value"]
    assert k["models in production"] == 2
    assert k["share above chance"] == 0.5
    assert k["experiments this week"] == 2
    assert k["scores per hour (1-day avg)"] == pytest.approx(2500 / 24)
    assert k["scores per week"] == 3200
    assert k["predictions per day (7-day avg)"] == pytest.approx(3200 / 7)
    assert k["models trained this month"] == 0  # no run folder holds a model
    assert len(res.models) == 2 and set(res.scores["tenant"]) == {"acme", "globex"}


def test_figures_and_self_contained_html(tmp_path):
    res = run([batch(1, NOW - timedelta(hours=5), table(seed=1), scores(seed=1)),
               batch(2, NOW, table(seed=2, spend_scale=10), scores(seed=2))])
    figs = res.figures()
    assert set(figs) == {"kpis_over_time", "scores_over_time", "live_auroc_over_time", "psi_over_time",
                         "score_distributions", "drift", "auroc"}
    assert all(f.axes for f in figs.values())
    page = res.to_html(tmp_path / "m.html")
    assert (tmp_path / "m.html").read_text() == page
    assert page.count("data:image/png;base64,") == 7 and "src=\"http" not in page
    assert "spend" in page and "class='alert'" in page
    assert ">4,000</td>" in page  # rows scored, with a thousands separator
    assert "Production models" in res._repr_html_()


def test_empty_runs_folder_gives_empty_result(tmp_path):
    res = monitoring.monitor(runs_dir=tmp_path / "nothing")
    assert res.models.empty and res.ok and res.kpi("models in production") == 0
    assert "No production models yet" in res.to_html()
    assert f"runs folder {tmp_path / 'nothing'} (given)" in res.to_html()
    assert "<td>models in production</td><td class='num'>0</td>" in res.to_html()  # a count, not "0.000"
    assert not (tmp_path / "nothing").exists()


def test_drift_is_measured_on_enough_rows_not_on_a_tiny_last_batch():
    """A 19-row test batch must not turn the dashboard red: drift pools the latest batches
    until they hold min_drift_rows rows; below that in all, drift is shown but not alerted."""
    big, tiny = table(seed=1), table(n=19, seed=2, spend_scale=10)
    res = run([batch(1, NOW - timedelta(days=1), big, scores(seed=1)),
               batch(2, NOW - timedelta(hours=1), tiny, scores(n=19, seed=2, shift=0.3))])
    assert res.ok and res.alerts.empty
    m = res.models.iloc[0]
    assert m["drift_rows"] == 2019 and m["score_psi"] < 0.1
    # the pooled summary is that of both batches' rows together
    pooled = drift.summarize(pd.concat([big, tiny]), CARD["reference"])["fields"]
    d = res.drift.set_index("field")
    assert d.loc["spend", "psi"] == pytest.approx(drift.psi(CARD["reference"]["fields"]["spend"]["shares"],
                                                            pooled["spend"]["shares"]), rel=1e-9)
    # the tiny batch alone: shown, level "too few rows", no alert
    alone = run([batch(2, NOW - timedelta(hours=1), tiny, scores(n=19, seed=2, shift=0.3))])
    assert alone.ok and alone.alerts.empty and (alone.drift["level"] == FEW_ROWS).all()
    assert alone.models.iloc[0]["drift_rows"] == 19 and alone.models.iloc[0]["max_field_psi"] > 0.25
    # a shifted batch that is big enough on its own is judged alone
    shifted = run([batch(1, NOW - timedelta(days=1), big, scores(seed=1)),
                   batch(2, NOW - timedelta(hours=1), table(n=600, seed=3, spend_scale=10),
                         scores(n=600, seed=3, shift=0.3))])
    assert not shifted.ok and shifted.models.iloc[0]["drift_rows"] == 600
    assert run([batch(2, NOW, tiny, scores(n=19, seed=2))], min_drift_rows=10).drift["level"].ne(
        FEW_ROWS).all()


# -- history: the KPIs as series -------------------------------------------------------
def test_kpi_history_counts_per_day():
    b = [batch(1, NOW - timedelta(days=2, hours=1), table(n=300, seed=1), scores(n=300, seed=1)),
         batch(2, NOW - timedelta(hours=3), table(n=500, seed=2), scores(n=500, seed=2)),
         batch(3, NOW - timedelta(hours=2), table(n=200, seed=3), scores(n=200, seed=3))]
    versions = [{"app": "leads", "tenant": "acme", "promoted_at": (NOW - timedelta(days=5)).isoformat()},
                {"app": "leads", "tenant": "acme", "promoted_at": (NOW - timedelta(days=1)).isoformat()},
                {"app": "leads", "tenant": "globex", "promoted_at": (NOW - timedelta(days=3)).isoformat()}]
    res = monitoring.evaluate([prod()], pd.DataFrame(b), NO_FEEDBACK, RUNS, thresholds(), NOW, versions=versions)
    h = res.history.pivot(index="day", columns="kpi", values="value")
    assert len(h) == 30 and h.index[-1] == pd.Timestamp(NOW).normalize()
    today, two_days_ago = pd.Timestamp(NOW).normalize(), pd.Timestamp(NOW).normalize() - timedelta(days=2)
    assert h.loc[today, "scores per day"] == 700 and h.loc[two_days_ago, "scores per day"] == 300
    assert h["scores per day"].sum() == 1000
    assert h["experiments per day"].sum() == 3  # the run 40 days ago is outside the window
    assert h.loc[today - timedelta(days=1), "experiments per day"] == 1
    # a (app, tenant) counts from its first promotion on; a later version does not add one
    assert h.loc[today - timedelta(days=6), "models in production"] == 0
    assert h.loc[today - timedelta(days=4), "models in production"] == 1
    assert h.loc[today, "models in production"] == 2


def test_live_auroc_per_day_and_psi_per_batch():
    rng = np.random.default_rng(0)
    day1, day2 = NOW - timedelta(days=3), NOW - timedelta(hours=1)
    s1, s2 = rng.random(300), rng.random(300)
    ids1, ids2 = [f"a{i}" for i in range(300)], [f"b{i}" for i in range(300)]
    scored = pd.DataFrame({"id": ids1 + ids2, "score": np.r_[s1, s2], "batch": ["b1"] * 300 + ["b2"] * 300})
    labels = np.r_[(s1 + rng.normal(0, 0.1, 300) > 0.5), rng.integers(0, 2, 300)].astype(int)  # day 2: noise
    fb = pd.DataFrame({"app": "leads", "tenant": "acme", "id": ids1 + ids2, "label": labels, "loaded_at": NOW})
    b = [batch(1, day1, table(n=300, seed=1), s1), batch(2, day2, table(n=300, seed=2, spend_scale=8), s2)]
    res = run(b, feedback=fb, scored=lambda _: scored)
    live = res.auroc_history.set_index("day")["live_auroc"]
    assert list(live.index) == [pd.Timestamp(day1).normalize(), pd.Timestamp(day2).normalize()]
    assert live.iloc[0] > 0.85 and live.iloc[1] < 0.65
    assert (res.auroc_history["eval_auroc"] == 0.80).all() and (res.auroc_history["rows"] == 300).all()
    psi = res.drift_history.pivot(index="batch", columns="field", values="psi")
    assert set(psi.columns) == {"(score)", "spend", "source", "note"}
    assert psi.loc["b1", "spend"] < 0.1 < 0.25 < psi.loc["b2", "spend"]  # spend x8 in batch 2 only
    names = set(res.figures())
    assert {"kpis_over_time", "live_auroc_over_time", "psi_over_time"} <= names
    page = res.to_html()
    assert page.count("<img") == len(names) and "<script" not in page and "http" not in page


def test_drift_heatmap_labels_are_readable():
    b = [batch(1, NOW - timedelta(hours=2), table(seed=1, spend_scale=10), scores(seed=1, shift=0.3))]
    fig = run(b).figures()["drift"]
    texts = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    high = max(texts, key=float)
    low = min(texts, key=float)
    assert float(high) > 1 and texts[high] == "white"  # dark red cell: white text
    assert float(low) < 0.1 and texts[low] == "black"
    empty = monitoring.evaluate([], pd.DataFrame(), NO_FEEDBACK, RUNS, thresholds(), NOW)
    assert list(empty.figures()) == ["kpis_over_time"] and empty.history["value"].sum() == 3
