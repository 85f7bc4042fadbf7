"""Scoring on a real Dask cluster (a `dask scheduler` and two `dask worker` processes that
the test starts on 127.0.0.1) equals scoring in this process, row for row."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from expkit import scoring
from expkit.engine import DaskEngine
from expkit.scoring import scorelog

from .conftest import RUN, expected_scores, leads

pytest.importorskip("distributed")


class FarCluster(DaskEngine):
    """The same cluster, as if its workers saw none of this machine's files: the model's
    bytes are broadcast and the input's parts handed over."""

    shares_files = False

    def sees(self, path) -> bool:
        return False


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_scoring_on_a_cluster_equals_local_scoring(model, runs_dir, tmp_path, dask_cluster, fmt, caplog):
    """The workers see the files here: they write their scored parts themselves."""
    caplog.set_level("INFO", logger="expkit.scoring")
    df = leads(4000, seed=9)
    src = tmp_path / f"in.{fmt}"
    df.to_csv(src, index=False) if fmt == "csv" else df.to_parquet(src, row_group_size=500)
    local = scoring.score_file(src, tmp_path / "local.csv", app="leads", run=RUN, chunksize=500, keep=["source"])
    far = scoring.score_file(src, tmp_path / "cluster.csv", app="leads", run=RUN, chunksize=500, keep=["source"],
                             cluster=dask_cluster.address)
    a, b = pd.read_csv(tmp_path / "local.csv"), pd.read_csv(tmp_path / "cluster.csv")
    pd.testing.assert_frame_equal(a, b)
    assert b["lead_id"].tolist() == df["lead_id"].tolist()
    np.testing.assert_allclose(b["score"], expected_scores(model, df), rtol=1e-9)
    assert local["rows"] == far["rows"] == 4000 and local["score_counts"] == far["score_counts"]
    assert local["fields"] == far["fields"]
    assert scorelog.count_batches(runs_dir) == 2
    assert "the workers write their scored parts" in caplog.text


def test_workers_that_cannot_see_the_files_get_the_model_and_rows_sent(model, runs_dir, tmp_path, dask_cluster):
    from distributed import Client

    df = leads(2000, seed=10)
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    with Client(dask_cluster.address, set_as_default=False) as client:
        far = FarCluster(client)
        record = scoring.score_file(src, tmp_path / "far.parquet", app="leads", run=RUN, chunksize=300,
                                    cluster=far)
        assert not client.status == "closed"  # a client passed in stays open
    out = pd.read_parquet(tmp_path / "far.parquet")
    assert out["lead_id"].tolist() == df["lead_id"].tolist() and record["rows"] == 2000
    np.testing.assert_allclose(out["score"], expected_scores(model, df), rtol=1e-9)
