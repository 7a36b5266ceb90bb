"""Checking pool clips cheaply, from audio headers: metadata rows -> :class:`Clip` objects. Each
check (and the content hash, once computed) is cached under ``<cache>/audio/header-<key>.json``
(key: path, size, mtime), so a restart only stats files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from apex.audio import AudioError
from apex.files import sha256_file, sha256_text, write_json_atomic

_TRUE = {"true", "1", "yes", "instrumental"}
_FALSE = {"false", "0", "no", "vocal"}


@dataclass(frozen=True)
class Clip:
    """One clip of the pool: ``path`` absolute, ``file_name`` relative to the pool folder (the
    released ``audio_a``/``audio_b``), ``duration_s`` from the audio header. Until scored,
    ``scores`` (the seven), ``result`` (``ScoreResult.to_dict()``) and ``model_version``
    (``"<model id>@<version>"``) are empty; ``content_hash`` (sha256 hex) until first needed."""

    clip_id: str
    path: Path
    file_name: str
    system: str
    prompt: str
    is_instrumental: bool
    duration_s: float
    scores: dict[str, float] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    content_hash: str = ""
    model_version: str | None = None

    def scored_by(self, version: str | None) -> bool:
        """Whether the clip has scores from the model ``version``."""
        return bool(self.scores) and self.model_version == version


class _Refused(ValueError):
    """A metadata row that cannot be a clip; the message says why (the row is skipped)."""


def read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # a torn or foreign cache file is recomputed, never trusted


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    # A cache entry: rebuilt when lost, so no fsync; readers see the old file or the new one.
    if path is not None:
        write_json_atomic(path, data, indent=None, fsync=False)


def validate_rows(
    root: Path, meta: pd.DataFrame, cache: Path | None, max_seconds: float
) -> tuple[list[Clip], list[tuple[str, str]]]:
    """The usable clips of ``meta``'s rows and ``(file_name, reason)`` of the others."""
    clips: list[Clip] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for row in meta.to_dict("records"):
        name = str(row["file_name"])
        path = (root / name).resolve()
        clip_id = str(row.get("clip_id") or Path(name).stem)
        try:
            if not path.is_relative_to(root):
                raise _Refused("file_name points outside the pool folder")
            if clip_id in seen:
                raise _Refused(f"duplicate clip_id {clip_id!r}")
            if not path.is_file():
                raise _Refused("file not found")
            system = str(row["system"]).strip()
            if not system:
                raise _Refused("empty system")
            flag = str(row["is_instrumental"]).strip().lower()
            if flag not in _TRUE | _FALSE:
                raise _Refused(f"is_instrumental={row['is_instrumental']!r} is not true/false")
            entry = _entry(path, cache)  # the header check, cached while the file is unchanged
            checked = read_json(entry)
            if checked is None or "duration_s" not in checked:
                checked = {"duration_s": _header_seconds(path, max_seconds)}
                write_json(entry, checked)
            if checked["duration_s"] > max_seconds:
                raise _Refused(
                    f"{checked['duration_s']:.1f} s is longer than APEX_MAX_AUDIO_S="
                    f"{max_seconds:g} s; trim the clip or raise APEX_MAX_AUDIO_S"
                )
        except (AudioError, _Refused, OSError) as exc:
            skipped.append((name, str(exc)))
            continue
        seen.add(clip_id)
        prompt = row.get("prompt")
        clips.append(
            Clip(
                clip_id=clip_id,
                path=path,
                file_name=name,
                system=system,
                prompt="" if pd.isna(prompt) else str(prompt),
                is_instrumental=flag in _TRUE,
                duration_s=float(checked["duration_s"]),
                content_hash=str(checked.get("content_hash", "")),
            )
        )
    return clips, skipped


def _entry(path: Path, cache: Path | None) -> Path | None:
    """The header cache entry of ``path``: keyed by its path, size and modification time."""
    if cache is None:
        return None
    stat = path.stat()
    stamp = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache / "audio" / f"header-{sha256_text(stamp)}.json"


def content_hash(path: Path, cache: Path | None) -> str:
    """sha256 hex of the file, read from its header entry when known, else computed and kept."""
    entry = _entry(path, cache)
    checked = read_json(entry) or {}
    if not checked.get("content_hash"):
        checked["content_hash"] = sha256_file(path)
        if "duration_s" in checked:
            write_json(entry, checked)
    return str(checked["content_hash"])


def _header_seconds(path: Path, max_seconds: float) -> float:
    """Duration from the audio header, seconds (a format libsndfile cannot open is decoded);
    AudioError when not readable audio or shorter than ``apex.audio.MIN_SECONDS``."""
    import soundfile as sf

    from apex.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, MIN_SECONDS, load_audio

    try:
        info = sf.info(str(path))
    except sf.LibsndfileError:
        return load_audio(path, max_seconds=max_seconds).duration_s
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE or info.channels < 1:
        raise AudioError(
            f"{path.name}: header says {info.samplerate} Hz, {info.channels} channels; "
            "the file is corrupt or not music"
        )
    seconds = info.frames / info.samplerate
    if seconds < MIN_SECONDS:
        raise AudioError(
            f"{path.name}: {seconds:.2f} s is too short; APEX needs at least {MIN_SECONDS:.0f} s"
        )
    return float(seconds)
