"""`benchmarks/tournament.py --report` pools result files: the last row of a (table,
budget, seed) wins, and a last row run --expkit-only keeps the earlier FLAML row."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "bench_tournament", Path(__file__).resolve().parents[1] / "benchmarks" / "tournament.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def row(seed, expkit, flaml):
    return {"dataset": "oj", "budget": 120.0, "seed": seed, "train_rows": 802, "test_rows": 268,
            "positive_rate": 0.39, "expkit": {"auroc": expkit, "seconds": 118.0, "winner": "ensemble"},
            "flaml": None if flaml is None else {"auroc": flaml, "seconds": 120.0, "winner": "lgbm"},
            "hgb": {"auroc": 0.8787, "seconds": 0.2}}


def result(rows, expkit_only=False):
    return {"machine": {"processor": "x86_64", "cpus": 2, "platform": "test", "python": "3",
                        "scikit-learn": "1", "lightgbm": "4", "flaml": "2"},
            "expkit_only": expkit_only, "rows": rows}


def test_an_expkit_only_row_keeps_the_earlier_flaml_measurement(tmp_path, capsys):
    old, new, out = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "pooled.json"
    old.write_text(json.dumps(result([row(0, 0.9031, 0.9021), row(1, 0.9041, 0.9079), row(2, 0.9023, 0.9038)])))
    new.write_text(json.dumps(result([row(0, 0.9033, None), row(1, 0.9057, None)], expkit_only=True)))
    bench.report([old, new], out)
    pooled = json.loads(out.read_text())
    rows = {r["seed"]: r for r in pooled["rows"]}
    assert rows[0]["expkit"]["auroc"] == 0.9033 and rows[0]["flaml"]["auroc"] == 0.9021
    assert rows[0]["flaml_from_earlier_run"] and "flaml_from_earlier_run" not in rows[2]
    assert rows[2]["expkit"]["auroc"] == 0.9023  # not measured again: the earlier row
    (cell,) = pooled["summary"]
    assert cell["expkit"] == 0.9033 and cell["flaml"] == 0.9038 and cell["at_least_both"] is False
    assert "| oj |" in capsys.readouterr().out
    # a row measured with FLAML replaces the earlier one whole
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(result([row(2, 0.9054, 0.9030)])))
    bench.report([old, new, newer], out)
    assert json.loads(out.read_text())["summary"][0]["at_least_both"] is True
