"""Build, cache and read the synthetic demo corpus (``datasets`` audiofolder layout; layout,
determinism and caching: ``data/README.md``, "Demo corpus"). Every file but ``corpus.json``
(written last: it marks completion) is a deterministic function of ``(seed, n_clips,
DEMO_VERSION)``; every clip draws from its own generator."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import soundfile as sf

from apex.demo.synth import LEAD_TIMBRES, ClipSpec, render_clip
from apex.demo.systems import SYSTEMS, TRAITS, aesthetics, engagement
from apex.files import is_partial, partial_name, write_text_atomic
from apex.tasks import AESTHETICS, ENGAGEMENT_POWER

if TYPE_CHECKING:
    from apex.settings import Settings

#: Bump when anything changes the generated files; a cached corpus of another version is rebuilt.
DEMO_VERSION = "2"
PLATFORM = "demo-synth"
#: (sample rate Hz, channels, probability): mostly MERT's 24 kHz mono, some CD/video-rate stereo.
FORMATS = ((24_000, 1, 0.80), (44_100, 2, 0.10), (48_000, 2, 0.10))
FLAC_SHARE = 0.2
SPLIT_SHARES = (("val", 0.15), ("test", 0.15))  # by prompt; the rest is train

_KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MOODS = ("upbeat", "wistful", "driving", "dreamy", "dark", "sunny", "tense", "laid-back")
_GENRES = ("synth-pop", "chiptune", "lo-fi", "ballad", "electro", "folk-tronica", "retro game")
_REQUIRED = (
    "file_name",
    "clip_id",
    "system",
    "prompt",
    "is_instrumental",
    "duration_s",
    "sample_rate",
    "channels",
    *AESTHETICS,
    "streams",
    "likes",
    "score_streams",
    "score_likes",
    "quality",
    "split",
)


def build_demo_corpus(
    out_dir: str | Path, *, seed: int = 0, n_clips: int = 480, force: bool = False
) -> Path:
    """Generate the demo corpus into ``out_dir`` (only its own files are replaced), or reuse a
    complete one of the same seed, version and size unless ``force``. Raises ValueError when
    ``n_clips`` < ``len(SYSTEMS)`` or ``seed`` < 0."""
    out = Path(out_dir)
    if n_clips < len(SYSTEMS):
        raise ValueError(f"n_clips={n_clips} is too small; use at least {len(SYSTEMS)}.")
    if seed < 0:
        raise ValueError(f"seed={seed} must be >= 0.")
    if not force and _is_current(out, seed, n_clips):
        return out
    out.mkdir(parents=True, exist_ok=True)
    # app workers, tests and the CLI may all ask at once; a waiter then finds the corpus current
    with build_lock(out / ".build.lock"):
        if force or not _is_current(out, seed, n_clips):
            _build(out, seed, n_clips)
    return out


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (``flock``) and threads (each opens its own file)."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _build(out: Path, seed: int, n_clips: int) -> None:
    started = time.perf_counter()
    for stale in out.iterdir():
        if is_partial(stale):  # a killed build's staging folder
            shutil.rmtree(stale, ignore_errors=True)
    staging = partial_name(out / "build")
    (staging / "audio").mkdir(parents=True)
    plan = _plan(seed, n_clips)
    # One process on purpose (~25 ms a clip): "fork" is unsafe under threaded callers (gradio,
    # torch) and "spawn" re-imports the caller's __main__, breaking scripts without a main guard.
    for i, clip in enumerate(plan):
        audio = render_clip(clip["spec"], np.random.default_rng([seed, 2, i]))
        sf.write(staging / clip["file_name"], audio.T, clip["spec"].sample_rate, subtype="PCM_16")
    table = _ground_truth(plan, seed)
    table.to_csv(staging / "metadata.csv", index=False)
    _write_engagement(staging / "engagement.jsonl", table)
    # Swap in the new files; corpus.json goes last so an interrupted build is never "current".
    (out / "corpus.json").unlink(missing_ok=True)
    shutil.rmtree(out / "audio", ignore_errors=True)
    for name in ("audio", "metadata.csv", "engagement.jsonl"):
        os.replace(staging / name, out / name)
    shutil.rmtree(staging)
    info = _corpus_info(table, seed, n_clips, time.perf_counter() - started)
    write_text_atomic(out / "corpus.json", json.dumps(info, indent=2) + "\n")


def ensure_demo_corpus(settings: Settings) -> Path:
    """The demo corpus of ``settings`` (``demo_dir``, ``demo_seed``, ``demo_clips``), built on
    first need and reused afterwards."""
    return build_demo_corpus(
        settings.demo_dir, seed=settings.demo_seed, n_clips=settings.demo_clips
    )


def load_metadata(corpus_dir: str | Path) -> pd.DataFrame:
    """A corpus's ``metadata.csv``, one row per clip (columns in data/README.md). Raises
    FileNotFoundError without the file, ValueError when it lacks columns."""
    path = Path(corpus_dir) / "metadata.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"no demo corpus at {corpus_dir} (missing metadata.csv); build it with "
            "apex.demo.build_demo_corpus(dir) or ensure_demo_corpus(settings)."
        )
    table = pd.read_csv(path, dtype={"clip_id": str, "split": str})
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; rebuild it with force=True.")
    table["is_instrumental"] = table["is_instrumental"].astype(bool)
    return table


def _is_current(out: Path, seed: int, n_clips: int) -> bool:
    try:
        info = json.loads((out / "corpus.json").read_text())
    except (OSError, ValueError):
        return False
    wanted = {"seed": seed, "version": DEMO_VERSION, "n_clips": n_clips}
    if any(info.get(k) != v for k, v in wanted.items()) or not (out / "metadata.csv").is_file():
        return False
    audio = out / "audio"
    return audio.is_dir() and sum(1 for _ in audio.iterdir()) == n_clips


def _plan(seed: int, n_clips: int) -> list[dict[str, Any]]:
    """Every clip's prompt, system, traits and file format (no audio yet)."""
    rng = np.random.default_rng([seed, 1])
    n_prompts = -(-n_clips // len(SYSTEMS))
    plan = []
    for p in range(n_prompts):
        tonic, minor = int(rng.integers(12)), bool(rng.random() < 0.4)
        bpm = float(rng.integers(76, 133))
        instrument = str(rng.choice(list(LEAD_TIMBRES)))
        vocals = bool(rng.random() < 0.5)
        lead = "a sung lead" if vocals else f"instrumental, {instrument} lead"
        prompt = (
            f"[synthetic demo] {rng.choice(_MOODS)} {rng.choice(_GENRES)} in "
            f"{_KEYS[tonic]} {'minor' if minor else 'major'}, {bpm:.0f} BPM, {lead}"
        )
        for system_index in rng.permutation(len(SYSTEMS)):
            if len(plan) == n_clips:
                break
            system = SYSTEMS[system_index]
            traits = system.draw_traits(rng)
            sung = vocals and bool(rng.random() < system.vocal)
            k = rng.choice(len(FORMATS), p=[f[2] for f in FORMATS])
            ext = "flac" if rng.random() < FLAC_SHARE else "wav"
            clip_id = f"demo-s{seed}-{len(plan):04d}"
            spec = ClipSpec(
                traits=traits,
                tonic=tonic,
                minor=minor,
                bpm=bpm,
                lead="voice" if sung else instrument,
                duration_s=round(float(rng.uniform(8.0, 15.0)), 1),
                sample_rate=FORMATS[k][0],
                channels=FORMATS[k][1],
            )
            plan.append(
                {
                    "clip_id": clip_id,
                    "file_name": f"audio/{clip_id}.{ext}",
                    "system": system.name,
                    "prompt": prompt,
                    "prompt_index": p,
                    "spec": spec,
                }
            )
    return plan


def _ground_truth(plan: list[dict[str, Any]], seed: int) -> pd.DataFrame:
    """The metadata table: identity, format, ground truth, split, traits."""
    rng = np.random.default_rng([seed, 3])
    traits = np.array([[c["spec"].traits[t] for t in TRAITS] for c in plan])
    sung = np.array([c["spec"].lead == "voice" for c in plan])
    scores = aesthetics(traits, sung, rng)
    counts = engagement(scores, rng)
    return pd.DataFrame(
        {
            **{k: [c[k] for c in plan] for k in ("file_name", "clip_id", "system", "prompt")},
            "is_instrumental": ~sung,
            "duration_s": [c["spec"].duration_s for c in plan],
            "sample_rate": [c["spec"].sample_rate for c in plan],
            "channels": [c["spec"].channels for c in plan],
            **{a: scores[a].round(4) for a in AESTHETICS},
            **{k: v.round(4) for k, v in counts.items()},  # streams, likes: integers
            "split": _splits([c["prompt_index"] for c in plan], seed),
            "lead": [c["spec"].lead for c in plan],
            **{f"trait_{t}": traits[:, i].round(4) for i, t in enumerate(TRAITS)},
        }
    )


def _splits(prompt_index: list[int], seed: int) -> list[str]:
    """train/val/test by complete prompt (one clip of each system), so no prompt's material
    leaks across splits; with fewer than three complete prompts, clip by clip."""
    index = np.asarray(prompt_index)
    complete = np.flatnonzero(np.bincount(index) == len(SYSTEMS))
    rng = np.random.default_rng([seed, 4])
    if len(complete) < 3:
        return [("train", "val", "test")[i % 3] for i in range(len(index))]
    order = rng.permutation(complete)
    labels = np.full(index.max() + 1, "train", dtype=object)
    start = 0
    for name, share in SPLIT_SHARES:
        count = max(1, round(share * len(order)))
        labels[order[start : start + count]] = name
        start += count
    return [str(labels[i]) for i in index]


def _write_engagement(path: Path, table: pd.DataFrame) -> None:
    """The reference's JSONL manifest shape (id, score_streams, score_likes, platform) + extras."""
    keys = ["id", "score_streams", "score_likes", "platform", *AESTHETICS, "streams", "likes"]
    rows = table.assign(id=table["clip_id"], platform=PLATFORM)[[*keys, "file_name", "split"]]
    path.write_text("".join(json.dumps(record) + "\n" for record in rows.to_dict("records")))


def _corpus_info(table: pd.DataFrame, seed: int, n_clips: int, seconds: float) -> dict:
    return {
        "name": "apex-demo-corpus",
        "synthetic": True,
        "note": "Synthetic demo data with known ground truth; not real AI-generated music.",
        "version": DEMO_VERSION,
        "seed": seed,
        "n_clips": n_clips,
        "n_prompts": int(table["prompt"].nunique()),
        "systems": [s.name for s in SYSTEMS],
        "splits": table["split"].value_counts().sort_index().to_dict(),
        "sample_rates": table["sample_rate"].value_counts().sort_index().to_dict(),
        "engagement_exponent": ENGAGEMENT_POWER,
        "build_seconds": round(seconds, 2),
    }
