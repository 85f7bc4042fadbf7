"""TournamentPanel driven headless: Run, live leaderboard, Stop, errors, tenants."""
from __future__ import annotations

import pytest

import expkit
from expkit.errors import ConfigError, TargetError
from expkit.models.result import TenantTournamentResult, TournamentResult
from expkit.widgets import TournamentPanel

pytestmark = pytest.mark.slow  # real (tiny) tournaments


@pytest.fixture(scope="module")
def leads():
    return expkit.datasets.leads(n_rows=300, n_tenants=2, seed=2).drop(columns=["lead_id"])


def _only(panel, *families):
    for name, box in panel.family_boxes.items():
        box.value = name in families


def test_form_offers_what_fits_the_task(leads):
    panel = TournamentPanel(leads, target="converted", budget=20)
    assert panel.task == "binary"
    assert "logistic" in panel.family_boxes and "ridge" not in panel.family_boxes
    assert panel.metric.options[0] == "auto" and "roc_auc" in panel.metric.options
    assert "rmse" not in panel.metric.options
    assert "converted" not in [v for _, v in panel.tenant.options]
    _only(panel)
    with pytest.raises(ConfigError, match="no model family"):
        panel.run()
    panel.run_button.click()  # the button shows the problem instead of raising
    assert "no model family" in panel.status.value and not panel.running
    with pytest.raises(TargetError, match="ghost"):
        TournamentPanel(leads, target="ghost")
    assert "application/vnd.jupyter.widget-view+json" in panel._repr_mimebundle_()


def test_run_blocking_fills_leaderboard_verdict_and_figures(leads):
    boards = []
    panel = TournamentPanel(leads, target="converted", budget=60, n_trials=3, n_jobs=1,
                            callbacks=[lambda study, trial: boards.append(panel.leaderboard.value)])
    _only(panel, "logistic")
    result = panel.run(block=True)
    assert isinstance(result, TournamentResult) and result is panel.result
    assert len(panel.trials) == len(result.trials) == 3
    assert list(panel.board["family"]) == ["logistic"]
    # the leaderboard was updated while it ran (callbacks see the previous trial's board)
    assert "logistic" in boards[-1] and "roc_auc" in boards[-1]
    assert panel.leaderboard.value == ""  # when done the verdict holds the final one
    assert "Winner" in panel.verdict.value
    assert set(panel.figures) == {"roc", "calibration", "importance"}
    assert len(panel.figure_box.children) == 3
    # the search views are drawn on request (Search views button), not during the run
    assert not panel.search_box.children and not panel.search_button.disabled
    panel.search_button.click()
    assert {"search_importances", "search_parallel_coordinate", "search_slice"} <= set(panel.figures)
    assert len(panel.search_box.children) == 3
    assert panel.progress.value == 1.0 and panel.progress.bar_style == "success"
    assert not panel.running and not panel.run_button.disabled and panel.stop_button.disabled
    assert "stopped early" not in panel.status.value


def test_stop_button_ends_the_search_and_keeps_the_best_so_far(leads):
    panel = None
    progress_seen, running_seen = [], []

    def press_stop_after_two_trials(study, trial):
        progress_seen.append(panel.progress.value)
        running_seen.append((panel.running, panel.stop_button.disabled, panel.run_button.disabled))
        if trial.number == 1:
            panel.stop_button.click()

    panel = TournamentPanel(leads, target="converted", budget=300, n_trials=40, n_jobs=1,
                            callbacks=[press_stop_after_two_trials])
    _only(panel, "logistic")
    panel.run_button.click()  # runs in a background thread
    result = panel.wait(timeout=240)
    assert result is not None and panel.error is None
    assert len(result.trials) <= 3 and len(panel.trials) == len(result.trials)
    assert result.winner == "logistic"
    assert "stopped early" in panel.status.value and "Winner" in panel.verdict.value
    assert running_seen[0] == (True, False, True)  # while running: Stop enabled, Run disabled
    assert progress_seen[-1] > 0  # moved with finished trials
    assert not panel.running and panel.stop_button.disabled and not panel.run_button.disabled


def test_a_failing_tournament_is_shown_not_raised_in_the_background(leads):
    one_class = leads.assign(converted=0)
    panel = TournamentPanel(one_class, target="converted", budget=20, n_trials=2, n_jobs=1)
    _only(panel, "logistic")
    panel.run_button.click()
    assert panel.wait(timeout=120) is None
    assert isinstance(panel.error, TargetError)
    assert "failed" in panel.status.value and panel.progress.bar_style == "danger"
    assert not panel.running and not panel.run_button.disabled
    with pytest.raises(TargetError):
        panel.run(block=True)


def test_panel_follows_the_explorers_overrides_made_later(leads):
    from expkit.widgets import Explorer

    explorer = Explorer(leads, target="converted")
    panel = TournamentPanel(leads, target="converted", schema=explorer, n_trials=1, n_jobs=1)
    assert panel.tenant.label == "(none)" and panel.tenant_column is None  # not an empty box
    explorer.set_type("web_visits", "categorical")  # after the panel was made
    assert panel.current_schema["web_visits"].type == "categorical"
    assert "1 override: web_visits categorical" in panel.schema_note()
    _only(panel, "logistic")
    result = panel.run(block=True)
    assert result.schema["web_visits"].type == "categorical"
    snapshot = TournamentPanel(leads, target="converted", schema=explorer.schema)
    explorer.set_type("spend", "categorical")
    assert snapshot.current_schema["spend"].type == "numeric" and snapshot.schema_note() == ""
    panel.tenant.value = "tenant"
    panel.tenant.value = None
    assert panel.tenant.label == "(none)" and panel.tenant_column is None


def test_tenant_column_runs_one_tournament_per_tenant(leads):
    boards = []
    panel = TournamentPanel(leads, target="converted", budget=60, n_trials=2,
                            callbacks=[lambda study, trial: boards.append(panel.leaderboard.value)])
    _only(panel, "logistic")
    panel.tenant.value = "tenant"
    result = panel.run(block=True)
    assert isinstance(result, TenantTournamentResult)
    assert set(result.winners["tenant"]) == set(leads["tenant"])
    assert len(panel.studies) == 2 and "tenant 2 of 2" in boards[-1]
    assert "Per-tenant tournaments" in panel.verdict.value
    assert set(panel.figures) == {f"importance [{t}]" for t in result.results}


def test_panel_says_when_the_budget_was_too_small(leads):
    """A family that cannot finish its folds within the budget: the panel's status says so."""
    import time

    from sklearn.linear_model import LogisticRegression

    from expkit.models import families
    from expkit.widgets.tournament_panel import budget_notes

    class Slow(LogisticRegression):
        def fit(self, X, y, **kw):
            time.sleep(2.0)
            return super().fit(X, y, **kw)

    families.register_family("slow_panel", lambda p, task, seed: Slow(), lambda t: {},
                             applies=lambda task, n, p, s: task != "regression")
    try:
        panel = TournamentPanel(leads, target="converted", budget=5, n_jobs=1)
        _only(panel, "logistic", "slow_panel")
        result = panel.run(block=True)
    finally:
        families.unregister_family("slow_panel")
    assert result.budget_note.startswith("budget too small: 1 of 2 families tried")
    assert result.budget_note in panel.status.value and budget_notes(result) == [result.budget_note]


def test_elapsed_time_is_not_compared_with_one_tenants_budget():
    from expkit.widgets.tournament_panel import elapsed_text

    assert elapsed_text(12.4, 30) == "12 s of 30 s"
    assert elapsed_text(16, 5, 3) == "16 s (budget 5 s per tenant, 3 tenants)"
