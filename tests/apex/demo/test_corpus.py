"""The synthetic demo corpus: layout, determinism, caching, ground truth, audible differences."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from apex.demo import SYSTEMS, TRAITS, build_demo_corpus, ensure_demo_corpus, load_metadata
from apex.demo.systems import DemoSystem, aesthetics, engagement_scores
from apex.tasks import AESTHETICS, ENGAGEMENT_POWER

MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])


def _fingerprint(corpus: Path) -> dict[str, str]:
    """sha256 of every generated file except corpus.json (which records the build time)."""
    files = [*sorted((corpus / "audio").iterdir()), corpus / "metadata.csv"]
    files.append(corpus / "engagement.jsonl")
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _mono(corpus: Path, file_name: str) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(corpus / file_name, dtype="float32", always_2d=True)
    return audio.mean(axis=1), sr


def _spectral_flatness(x: np.ndarray, n_fft: int = 2048) -> float:
    """Median over frames of geometric / arithmetic mean power spectrum (0 tonal, 1 noise)."""
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 2] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    return float(np.median(np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)))


def _centroid_hz(x: np.ndarray, sr: int) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    return float((power * np.fft.rfftfreq(len(x), 1 / sr)).sum() / power.sum())


def _scale_fit(x: np.ndarray, sr: int) -> float:
    """Share of 150-1500 Hz energy on the best-fitting diatonic scale's seven pitch classes."""
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    band = (freqs > 150) & (freqs < 1500)
    pitch_class = np.round(12 * np.log2(freqs[band] / 440.0)).astype(int) % 12
    chroma = np.bincount(pitch_class, weights=power[band], minlength=12)
    chroma /= chroma.sum()
    return max(chroma[(MAJOR_SCALE + k) % 12].sum() for k in range(12))


def test_systems_are_named_demos_with_valid_traits():
    names = [s.name for s in SYSTEMS]
    assert len(SYSTEMS) >= 8 and len(set(names)) == len(names)
    assert all(n.startswith("demo-") for n in names)
    rng = np.random.default_rng(0)
    for system in SYSTEMS:
        draws = [system.draw_traits(rng) for _ in range(50)]
        values = np.array([[d[t] for t in TRAITS] for d in draws])
        assert ((values > 0) & (values < 1)).all()
        assert values.std(axis=0).min() > 0.02, f"{system.name}: clips must vary around the means"
    with pytest.raises(TypeError):
        SYSTEMS[0].means["harmony"] = 0.1  # the module-level systems are read-only


def test_system_validation():
    means = dict.fromkeys(TRAITS, 0.5)
    with pytest.raises(ValueError, match="demo-"):
        DemoSystem("virtuoso", means, 0.0)
    with pytest.raises(ValueError, match="strictly between"):
        DemoSystem("demo-x", {**means, "timing": 1.0}, 0.0)
    with pytest.raises(ValueError, match="exactly the traits"):
        DemoSystem("demo-x", {"harmony": 0.5}, 0.0)


def test_systems_overlap_in_ground_truth():
    """Strong systems win on average, but a weak system's best clips beat a strong one's worst."""
    rng = np.random.default_rng(0)
    mean_aesthetic = {}
    for system in SYSTEMS:
        traits = np.array([[system.draw_traits(rng)[t] for t in TRAITS] for _ in range(400)])
        scores = aesthetics(traits, np.zeros(len(traits), dtype=bool), rng)
        mean_aesthetic[system.name] = np.mean([scores[a] for a in AESTHETICS], axis=0)
    strong, weak = mean_aesthetic["demo-virtuoso"], mean_aesthetic["demo-drift"]
    assert strong.mean() > weak.mean() + 0.5
    assert weak.max() > strong.min()
    # Neighbours in the ranking overlap broadly, not just at the extremes.
    assert np.percentile(mean_aesthetic["demo-murk"], 75) > np.percentile(
        mean_aesthetic["demo-autotune"], 25
    )
    assert mean_aesthetic["demo-static"].mean() == min(v.mean() for v in mean_aesthetic.values())


def test_layout_formats_and_labels(small_demo_corpus):
    meta = load_metadata(small_demo_corpus)
    assert (
        next(iter(pd.read_csv(small_demo_corpus / "metadata.csv", nrows=0).columns)) == "file_name"
    )
    assert len(meta) == 48 and meta["clip_id"].is_unique
    for row in meta.itertuples():
        info = sf.info(small_demo_corpus / row.file_name)
        assert (info.samplerate, info.channels) == (row.sample_rate, row.channels)
        assert info.frames / info.samplerate == pytest.approx(row.duration_s, abs=1e-3)
        assert 8.0 <= row.duration_s <= 15.0
    formats = set(zip(meta["sample_rate"], meta["channels"], strict=True))
    assert (24_000, 1) in formats and formats & {(44_100, 2), (48_000, 2)}
    assert (meta["sample_rate"] == 24_000).mean() > 0.5, "mostly MERT-rate mono"
    assert {Path(f).suffix for f in meta["file_name"]} == {".wav", ".flac"}
    # Each prompt is rendered by several different systems (arena battles on the same prompt).
    per_prompt = meta.groupby("prompt")["system"].agg(["size", "nunique"])
    assert (per_prompt["size"] >= 2).all() and (per_prompt["size"] == per_prompt["nunique"]).all()
    assert meta["prompt"].str.contains("synthetic demo").all()
    assert meta["is_instrumental"].any() and (~meta["is_instrumental"]).any()
    info = json.loads((small_demo_corpus / "corpus.json").read_text())
    assert info["synthetic"] is True and (info["seed"], info["n_clips"]) == (0, 48)
    lines = (small_demo_corpus / "engagement.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == list(meta["clip_id"])
    assert {"id", "score_streams", "score_likes", "platform", *AESTHETICS} <= set(records[0])


def test_ground_truth_ranges_and_relations(small_demo_corpus):
    meta = load_metadata(small_demo_corpus)
    for name in AESTHETICS:
        assert meta[name].between(1.0, 5.0).all(), name
    for name in ("score_streams", "score_likes"):
        assert meta[name].between(0.0, 100.0).all(), name
    assert (meta["likes"] >= 0).all() and (meta["likes"] <= meta["streams"]).all()
    # Engagement scores are an order-preserving map of the raw counts.
    for count, score in (("streams", "score_streams"), ("likes", "score_likes")):
        ordered = meta.sort_values(count)
        assert ordered[score].is_monotonic_increasing
    mean_aesthetic = meta[list(AESTHETICS)].mean(axis=1)
    assert np.corrcoef(mean_aesthetic, meta["quality"])[0, 1] > 0.8
    by_system = meta.assign(m=mean_aesthetic).groupby("system")["m"].mean()
    assert by_system["demo-virtuoso"] > by_system["demo-static"] + 1.0
    # Splits: by prompt, and every system appears in every split.
    assert set(meta["split"]) == {"train", "val", "test"}
    assert (meta.groupby("prompt")["split"].nunique() == 1).all()
    assert (meta.groupby("split")["system"].nunique() == len(SYSTEMS)).all()


def test_engagement_score_formula():
    counts = [10, 0, 10, 5]
    # Average ranks 3.5, 1, 3.5, 2 out of 4, then the documented power transform.
    expected = [100 * (r / 4) ** ENGAGEMENT_POWER for r in (3.5, 1, 3.5, 2)]
    assert engagement_scores(counts) == pytest.approx(expected)


def test_systems_differ_audibly_in_the_intended_direction(small_demo_corpus):
    meta = load_metadata(small_demo_corpus)
    stats = []
    for row in meta.itertuples():
        x, sr = _mono(small_demo_corpus, row.file_name)
        stats.append(
            {
                "system": row.system,
                "flatness": _spectral_flatness(x),
                "centroid": _centroid_hz(x, sr),
                "scale_fit": _scale_fit(x, sr),
            }
        )
    per_system = pd.DataFrame(stats).groupby("system").median()
    # Noise floor and clipping: the cleanest system is far more tonal than the noisiest.
    assert (
        per_system.loc["demo-garage", "flatness"] > 5 * per_system.loc["demo-virtuoso", "flatness"]
    )
    # Random pitches fit a diatonic scale worse than diatonic progressions.
    assert per_system.loc["demo-noodle", "scale_fit"] < per_system.loc["demo-virtuoso", "scale_fit"]
    # The muddy low-pass system is the darkest.
    assert per_system["centroid"].idxmin() == "demo-murk"


def test_same_seed_identical_files_and_new_seed_differs(tmp_path):
    a = _fingerprint(build_demo_corpus(tmp_path / "a", seed=3, n_clips=8))
    b = _fingerprint(build_demo_corpus(tmp_path / "b", seed=3, n_clips=8))
    c = _fingerprint(build_demo_corpus(tmp_path / "c", seed=4, n_clips=8))
    assert a == b
    assert a["metadata.csv"] != c["metadata.csv"]
    audio_a = {h for name, h in a.items() if name.startswith("demo-")}
    audio_c = {h for name, h in c.items() if name.startswith("demo-")}
    assert len(audio_a) == 8 and not audio_a & audio_c


def test_cached_build_is_reused_and_changes_rebuild(tmp_path, settings):
    out = tmp_path / "demo"
    build_demo_corpus(out, seed=0, n_clips=8)
    stamp = (out / "metadata.csv").stat().st_mtime_ns
    build_demo_corpus(out, seed=0, n_clips=8)
    assert (out / "metadata.csv").stat().st_mtime_ns == stamp, "a cached corpus is not rebuilt"
    build_demo_corpus(out, seed=1, n_clips=8)
    assert json.loads((out / "corpus.json").read_text())["seed"] == 1
    assert set(load_metadata(out)["clip_id"].str[:8]) == {"demo-s1-"}
    assert len(list((out / "audio").iterdir())) == 8, "old clips are removed on rebuild"
    build_demo_corpus(out, seed=1, n_clips=12)
    assert len(load_metadata(out)) == 12
    (out / "corpus.json").unlink()  # an interrupted build is never taken as complete
    stamp = (out / "metadata.csv").stat().st_mtime_ns
    build_demo_corpus(out, seed=1, n_clips=12)
    assert (out / "metadata.csv").stat().st_mtime_ns != stamp
    built = ensure_demo_corpus(settings.replace(demo_clips=16, demo_seed=2))
    assert built == settings.demo_dir and len(load_metadata(built)) == 16


def test_bad_arguments_and_missing_corpus(tmp_path):
    with pytest.raises(ValueError, match="n_clips"):
        build_demo_corpus(tmp_path, n_clips=3)
    with pytest.raises(FileNotFoundError, match="build_demo_corpus"):
        load_metadata(tmp_path / "nowhere")


def test_audiofolder_loads_through_datasets(small_demo_corpus, tmp_path):
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("torchcodec", reason="datasets decodes audio with torchcodec (make test)")
    loaded = datasets.load_dataset(
        "audiofolder", data_dir=str(small_demo_corpus), cache_dir=str(tmp_path / "hf")
    )["train"]
    meta = load_metadata(small_demo_corpus).set_index("clip_id")
    assert len(loaded) == len(meta)
    assert {"clip_id", "system", "prompt", "split", *AESTHETICS} <= set(loaded.column_names)
    for item in loaded.select(range(6)):
        row = meta.loc[item["clip_id"]]
        decoded = item["audio"].get_all_samples()
        info = sf.info(small_demo_corpus / row["file_name"])
        assert decoded.sample_rate == info.samplerate == row["sample_rate"]
        assert decoded.data.shape == (info.channels, info.frames)
    files = loaded.cast_column("audio", datasets.Audio(decode=False))
    for item in files.select(range(6)):
        row = meta.loc[item["clip_id"]]
        assert Path(item["audio"]["path"]).name == Path(row["file_name"]).name
