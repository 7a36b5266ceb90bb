"""``apex embed``: manifests, shards readable by training, errors shard, resumption after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apex.embed import (
    EmbedConfig,
    EmbedError,
    ManifestError,
    finished_ids,
    read_errors,
    read_manifest,
    run_embed,
)

ROOT = Path(__file__).resolve().parents[3]


def write_manifest(corpus: Path, n: int, *, bad: bool = True, name: str = "m.jsonl") -> Path:
    """The first ``n`` clips of a demo corpus (+ a corrupt and a missing file) as a JSONL file.

    The manifest and the corrupt file go beside the corpus, not into it: the corpus is shared by
    the session's tests (one of them loads it as an audiofolder, which extra files would break).
    """
    rows = [json.loads(line) for line in (corpus / "engagement.jsonl").read_text().splitlines()]
    rows = [{**r, "file_name": str(corpus / r["file_name"])} for r in rows[:n]]
    folder = corpus.parent / f"{corpus.name}-manifests"
    folder.mkdir(exist_ok=True)
    if bad:
        corrupt = folder / "corrupt-test.wav"
        wav = sorted((corpus / "audio").glob("demo-*.wav"))[0]
        corrupt.write_bytes(wav.read_bytes()[:3000])  # a WAV cut short: an interrupted copy
        rows.append({"id": "bad-corrupt", "file_name": "corrupt-test.wav"})
        rows.append({"id": "bad-missing", "file_name": "does-not-exist.wav"})
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(manifest: Path, out: Path, **changes) -> EmbedConfig:
    values = dict(manifest=str(manifest), out=out, workers=1, batch_size=2, shard_size=2)
    values.update(changes)
    values.setdefault("progress", False)
    return EmbedConfig(**values)


# ---------------------------------------------------------------------------- manifests
def test_manifest_aliases_paths_targets_and_extra(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "clip_id,file_name,split,score_likes,system\n"
        "a,audio/a.wav,train,61.5,x\n"
        "b,/abs/b.flac,,,y\n"
    )
    items = read_manifest(tmp_path / "m.csv")
    assert [i["id"] for i in items] == ["a", "b"]
    assert items[0]["audio"] == str(tmp_path / "audio" / "a.wav")  # relative to the manifest
    assert items[1]["audio"] == "/abs/b.flac"
    assert items[0]["score_likes"] == 61.5 and items[1]["score_likes"] is None
    assert items[0]["split"] == "train" and items[1]["split"] == "pool"
    assert items[1]["platform"] == "unknown"
    assert json.loads(items[0]["extra"]) == {"system": "x"}


def test_manifest_mixes_paths_and_urls_per_row(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "path": "x.wav"}\n{"id": "b", "url": "https://h/y.mp3"}\n')
    items = read_manifest(path)
    assert [i["audio"] for i in items] == [str(tmp_path / "x.wav"), "https://h/y.mp3"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"id": "a", "path": "x.wav"}\n{"id": "a", "path": "y.wav"}\n', "more than once"),
        ('{"name": "a", "path": "x.wav"}\n', "needs an id column"),
        ('{"id": "a", "path": "x.wav", "likes": "many"}\n', "not a number"),
    ],
)
def test_manifest_errors_are_clear(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(text)
    with pytest.raises(ManifestError, match=match):
        read_manifest(path)


def test_hub_dataset_offline_and_missing_file_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"cannot be loaded.*Offline"):
        read_manifest("nobody-here/no-such-dataset")
    with pytest.raises(ManifestError, match="no such file"):
        read_manifest(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------------------- the job
def test_embed_writes_training_shards_and_errors(small_demo_corpus: Path, tmp_path: Path) -> None:
    from apex.audio import load_audio
    from apex.encoders import FallbackEncoder
    from apex.training.data import read_shards, to_arrays

    manifest = write_manifest(small_demo_corpus, 4)
    out = tmp_path / "out"
    summary = run_embed(config(manifest, out))
    assert (summary.total, summary.embedded, summary.failed, summary.skipped) == (6, 4, 2, 0)
    assert summary.audio_seconds > 4 * 8.0  # demo clips are 8-15 s

    errors = read_errors(out).to_pandas().set_index("id")
    assert sorted(errors.index) == ["bad-corrupt", "bad-missing"]
    assert "no such file" in errors.loc["bad-missing", "reason"]
    assert errors.loc["bad-corrupt", "stage"] == "decode"
    assert errors.loc["bad-corrupt", "audio"].endswith("corrupt-test.wav")

    frame = read_shards(out / "embeddings")  # the training reader takes the shards as they are
    truth = pd.read_json(small_demo_corpus / "engagement.jsonl", lines=True).set_index("id")
    assert sorted(frame["id"]) == sorted(truth.index[:4])
    data = to_arrays(frame)
    assert data.song_x.shape == (4, 1, 176) and data.encoder_id == "fallback"
    row = frame.set_index("id").loc[truth.index[0]]
    assert row["score_likes"] == pytest.approx(truth.iloc[0]["score_likes"])
    assert row["split"] == truth.iloc[0]["split"] and row["platform"] == "demo-synth"
    assert row["status"] == "ok" and row["settings_key"] == FallbackEncoder().settings_key()

    # The stored vectors are the encoder's own output, pooled over segments with audio.
    audio = load_audio(small_demo_corpus / truth.iloc[0]["file_name"])
    expected = FallbackEncoder().encode(audio)
    segments = np.asarray(row["segments"]).reshape(row["segments_shape"])
    np.testing.assert_array_equal(segments, expected.layers.numpy())
    np.testing.assert_allclose(row["embedding"], expected.layers.numpy().mean(axis=0))
    assert row["duration_s"] == pytest.approx(audio.duration_s)
    assert not list(out.rglob(".tmp-*"))  # no partial file left behind

    # A rerun skips the finished songs and retries the failures (they may have been fixed).
    again = run_embed(config(manifest, out))
    assert (again.skipped, again.embedded, again.failed) == (4, 0, 2)
    assert len(read_shards(out / "embeddings")) == 4


def test_refuses_to_mix_encoders_in_one_folder(small_demo_corpus: Path, tmp_path: Path) -> None:
    manifest = write_manifest(small_demo_corpus, 1, bad=False, name="one.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    (out / "job.json").write_text(json.dumps({"encoder_id": "x", "settings_key": "y"}))
    with pytest.raises(EmbedError, match="one encoder per folder"):
        run_embed(config(manifest, out, workers=0))
    assert finished_ids(out) == set()


def test_mert_path_with_tiny_hubert(
    small_demo_corpus: Path, tiny_hubert_dir: Path, tmp_path: Path
) -> None:
    from apex.audio import load_audio
    from apex.encoders import load_encoder
    from apex.training.data import read_shards

    manifest = write_manifest(small_demo_corpus, 2, bad=False, name="two.jsonl")
    out = tmp_path / "out"
    run_embed(config(manifest, out, encoder=str(tiny_hubert_dir), precision="reference"))
    encoder = load_encoder(str(tiny_hubert_dir), precision="reference", device="cpu")
    frame = read_shards(out / "embeddings").set_index("id")
    first = json.loads(manifest.read_text().splitlines()[0])
    expected = encoder.encode(load_audio(first["file_name"]))
    row = frame.loc[first["id"]]
    assert row["embedding"].shape == (encoder.num_layers, encoder.dim)
    assert row["encoder_id"] == encoder.encoder_id
    np.testing.assert_allclose(row["embedding"], expected.layers.mean(dim=0).numpy(), atol=1e-5)
    padded = np.asarray(row["embedding_padded"]).reshape(row["embedding"].shape)
    np.testing.assert_allclose(padded, expected.layers_padded.mean(dim=0).numpy(), atol=1e-5)


def _children(pid: int) -> list[int]:
    """Pids of the processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_resume_after_kill_embeds_each_id_once(small_demo_corpus: Path, tmp_path: Path) -> None:
    from apex.training.data import read_shards

    manifest = write_manifest(small_demo_corpus, 12, bad=False, name="twelve.jsonl")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "apex.cli", "embed", str(manifest), "--out", str(out)]
    args += ["--workers", "1", "--batch-size", "1", "--shard-size", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(finished_ids(out)) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    assert workers, "the job had no decoding worker to orphan"
    # Its decoding workers (~900 MB each with torch) must not outlive it.
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "decoding workers outlived the killed job"
    before = finished_ids(out)
    assert 4 <= len(before) < 12

    summary = run_embed(config(manifest, out, workers=0))
    assert summary.skipped == len(before) and summary.embedded == 12 - len(before)
    frame = read_shards(out / "embeddings")  # raises if any id is in two shards
    expected = [json.loads(line)["id"] for line in manifest.read_text().splitlines()]
    assert sorted(frame["id"]) == sorted(expected)
    assert not list(out.rglob(".tmp-*"))


def test_cli_embed_reports_and_fails_cleanly(
    small_demo_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from apex.cli import main

    manifest = write_manifest(small_demo_corpus, 1, bad=True, name="cli.jsonl")
    out = tmp_path / "out"
    code = main(["embed", str(manifest), "--out", str(out), "--workers", "0", "--no-progress"])
    assert code == 1  # ran, but some songs failed (the convention's EXIT_FAILED)
    assert "embedded 1, failed 2, skipped 0" in capsys.readouterr().out
    assert main(["embed", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err


def crashing_decode(item: dict, sample_rate: int, max_seconds: float) -> dict:
    """A decoder whose process dies on one file (as a libsndfile crash or the OOM killer would)."""
    if item["id"] == "poison":
        os._exit(3)
    return {**item, "pcm": b"", "sample_rate": sample_rate}


def test_a_decoder_crash_fails_only_its_own_file() -> None:
    from apex.embed.job import decoded_items

    items = [{"id": f"s{n}", "audio": "x"} for n in range(6)]
    items.insert(3, {"id": "poison", "audio": "x"})
    results = list(decoded_items(items, 24_000, 600.0, 2, 4, decode=crashing_decode))
    assert [r["id"] for r in results] == [i["id"] for i in items]  # order kept, nothing lost
    failed = [r["id"] for r in results if "reason" in r]
    assert failed == ["poison"]
    assert "decoding process died" in results[3]["reason"]


def test_fetch_failures_say_what_went_wrong() -> None:
    from apex.embed.records import decode_item

    ftp = decode_item({"id": "f", "audio": "ftp://host/a.wav"}, 24_000, 600.0)
    assert ftp["stage"] == "fetch" and "unsupported URL scheme" in ftp["reason"]
    assert "offline" not in ftp["reason"]
    refused = decode_item({"id": "r", "audio": "http://127.0.0.1:9/a.wav"}, 24_000, 600.0)
    assert refused["stage"] == "fetch" and "could not download" in refused["reason"]


class _FailingEncoder:
    """Encodes nothing: raises ``error`` for the clip with id ``bad`` (and for any batch)."""

    encoder_id = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def settings_key(self) -> str:
        return "k"

    def encode_batch(self, audios: list) -> list:
        raise self.error

    def encode(self, audio):
        from apex.encoders.fallback import FallbackEncoder

        if audio.name == "bad":
            raise self.error
        return FallbackEncoder().encode(audio)


def _decoded(item_id: str) -> dict:
    pcm = np.random.default_rng(0).normal(0, 0.1, 24_000 * 2).astype(np.float32).tobytes()
    return {"id": item_id, "audio": "x.wav", "pcm": pcm, "sample_rate": 24_000, "duration_s": 2.0}


def test_a_bad_clip_is_recorded_but_a_programming_error_surfaces() -> None:
    from apex.audio import AudioError
    from apex.embed.records import encode_items

    records = encode_items(_FailingEncoder(AudioError("silent")), [_decoded("ok"), _decoded("bad")])
    assert [r["status"] for r in records] == ["ok", "error"]
    assert records[1]["stage"] == "encode" and "AudioError: silent" in records[1]["reason"]
    for bug in (TypeError("bug"), ValueError("wrong rate"), KeyError("x")):
        with pytest.raises(type(bug)):
            encode_items(_FailingEncoder(bug), [_decoded("ok"), _decoded("bad")])


def test_errors_shards_from_before_the_audio_column_rename_still_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from apex.embed.records import ERROR_FIELDS

    (tmp_path / "errors").mkdir()
    old = pa.schema([pa.field("source", f.type) if f.name == "audio" else f for f in ERROR_FIELDS])
    row = {"id": "a", "source": "a.wav", "stage": "decode", "reason": "bad", "time": 1.0}
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "errors" / "p0.parquet")
    new = pa.Table.from_pylist(
        [{**row, "id": "b", "audio": "b.wav"}], schema=pa.schema(ERROR_FIELDS)
    )
    pq.write_table(new, tmp_path / "errors" / "p1.parquet")
    assert read_errors(tmp_path).column("audio").to_pylist() == ["a.wav", "b.wav"]
