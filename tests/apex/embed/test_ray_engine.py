"""``apex embed --engine ray``: a local Ray (2 CPUs) writes the same shards as the local engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apex.embed import EmbedConfig, read_errors, run_embed
from tests.apex.embed.test_job import write_manifest

ray = pytest.importorskip("ray", reason="the Ray engine is the optional extra .[ray]")


@pytest.fixture
def local_ray():
    """A local Ray with 2 CPUs and no dashboard, shut down after the test."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_engine_matches_local_engine(
    small_demo_corpus: Path, tmp_path: Path, local_ray
) -> None:
    from apex.training.data import read_shards

    manifest = write_manifest(small_demo_corpus, 6, name="ray.jsonl")
    common = dict(manifest=str(manifest), batch_size=2, shard_size=3, progress=False)
    local = run_embed(EmbedConfig(out=tmp_path / "local", workers=1, **common))
    remote = run_embed(EmbedConfig(out=tmp_path / "ray", engine="ray", **common))
    assert (remote.embedded, remote.failed) == (local.embedded, local.failed) == (6, 2)
    assert remote.audio_seconds == pytest.approx(local.audio_seconds)

    a = read_shards(tmp_path / "local" / "embeddings").set_index("id").sort_index()
    b = read_shards(tmp_path / "ray" / "embeddings").set_index("id").sort_index()
    assert list(a.index) == list(b.index)
    assert list(a.columns) == list(b.columns)  # one layout, whichever engine wrote it
    for song in a.index:
        np.testing.assert_allclose(a.loc[song, "embedding"], b.loc[song, "embedding"], atol=1e-6)
        np.testing.assert_allclose(a.loc[song, "segments"], b.loc[song, "segments"], atol=1e-6)
    for column in ("duration_s", "split", "platform", "score_likes", "encoder_id", "extra"):
        assert a[column].tolist() == b[column].tolist(), column

    errors_local = read_errors(tmp_path / "local").to_pandas().set_index("id").sort_index()
    errors_ray = read_errors(tmp_path / "ray").to_pandas().set_index("id").sort_index()
    assert list(errors_ray.index) == ["bad-corrupt", "bad-missing"]
    assert errors_ray["reason"].tolist() == errors_local["reason"].tolist()

    # The Ray engine resumes like the local one: nothing left to do on a rerun.
    again = run_embed(EmbedConfig(out=tmp_path / "ray", engine="ray", **common))
    assert (again.skipped, again.embedded) == (6, 0)
