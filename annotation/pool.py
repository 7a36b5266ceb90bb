"""The arena's clip pool: AI-generated clips with their system, prompt and APEX scores.

A pool is a folder in Music Arena's release layout (see :mod:`apex.sources.music_arena`) or in
the ``datasets`` audiofolder convention: audio files plus ``metadata.csv`` or
``metadata.jsonl`` whose ``file_name`` column names each file (relative to the folder) and whose
``system``, ``prompt`` and ``is_instrumental`` columns describe it; an optional ``clip_id`` column
names clips (default: the file name without its extension). Every clip is decoded once with
:func:`apex.audio.load_audio`; clips that cannot be used are listed in :attr:`ClipPool.skipped` with
the reason and left out, so one bad file never takes the arena down. Reading either layout, and
resolving the ``APEX_POOL`` setting to a folder, live in :mod:`annotation.pool_sources`.

Scores are computed once per clip and cached as one JSON file per clip under
``cache_dir/pool/<model key>/<sha256 of the file>.json``: a restart, or the same file under another
name, costs no model time, and a new model (another key) scores afresh. Embeddings are cached by the
scorer's own encoder cache (keyed by audio content hash), so they too are computed once per clip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from annotation.pool_sources import PoolError, audiofolder_rows, music_arena_rows, pool_folder
from apex.settings import Settings
from apex.sources.download import sha256_of

logger = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "instrumental"}
_FALSE = {"false", "0", "no", "vocal"}
_SCORE_BATCH = 16


class ScorerLike(Protocol):
    """What the pool and the arena use of :class:`apex.scorer.Scorer` (duck-typed)."""

    def score(self, inputs: Sequence[Any]) -> list[Any]: ...
    def compare(self, a: Any, b: Any) -> float: ...
    def info(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Clip:
    """One clip of the pool.

    Attributes:
        clip_id: unique name within the pool.
        path: absolute path of the audio file.
        file_name: path relative to the pool folder (the released ``audio_a``/``audio_b``).
        duration_s: decoded length, seconds.
        scores: APEX's seven scores (empty without a scorer).
        result: the full ``ScoreResult.to_dict()`` (None without a scorer).
        content_hash: sha256 hex of the file's bytes.
    """

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


class ClipPool:
    """An immutable set of validated clips, looked up by id.

    Args:
        clips: the usable clips.
        root: the pool folder.
        skipped: ``(file_name, reason)`` of every clip left out.
        model_version: ``"<model id>@<version>"`` of the scorer that scored the clips, or None.
        results: live ``ScoreResult`` objects by clip id (for ``scorer.compare``), may be empty.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        root: Path,
        *,
        skipped: Sequence[tuple[str, str]] = (),
        model_version: str | None = None,
        results: dict[str, Any] | None = None,
        cache: Path | None = None,
    ) -> None:
        self._clips = {clip.clip_id: clip for clip in clips}
        self.root = Path(root)
        self.skipped = list(skipped)
        self.model_version = model_version
        self._results = dict(results or {})
        self._cache = cache

    def __len__(self) -> int:
        return len(self._clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self._clips.values())

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._clips

    def __getitem__(self, clip_id: str) -> Clip:
        try:
            return self._clips[clip_id]
        except KeyError:
            raise KeyError(f"clip {clip_id!r} is not in the pool at {self.root}") from None

    def rescore_with(self, scorer: ScorerLike) -> None:
        """Score every clip with ``scorer``'s current model (cached per model like the first
        scoring) and replace the scores in place: clips and results first, ``model_version``
        last, so a reader that sees the new version sees the new scores (the arena re-reads when
        the version changed under it). Clips that fail keep their old scores."""
        version, scored, results, failed = _score(list(self), scorer, self._cache)
        self._clips = {**self._clips, **{c.clip_id: c for c in scored}}
        self._results = {**self._results, **results}
        self.skipped = self.skipped + failed
        self.model_version = version

    @property
    def systems(self) -> list[str]:
        """Distinct systems, sorted."""
        return sorted({clip.system for clip in self})

    def result(self, clip_id: str) -> Any:
        """The clip's ``ScoreResult`` for ``scorer.compare``, or None when it was not scored."""
        self[clip_id]  # unknown ids raise KeyError with the pool's folder
        return self._results.get(clip_id)

    def frame(self) -> pd.DataFrame:
        """One row per clip: ``clip_id``, ``system``, ``prompt``, ``is_instrumental``,
        ``duration_s``, ``file_name`` and the seven scores when known (the sampler's input)."""
        rows = [
            {
                "clip_id": c.clip_id,
                "system": c.system,
                "prompt": c.prompt,
                "is_instrumental": c.is_instrumental,
                "duration_s": c.duration_s,
                "file_name": c.file_name,
                **c.scores,
            }
            for c in self
        ]
        columns = ["clip_id", "system", "prompt", "is_instrumental", "duration_s", "file_name"]
        return pd.DataFrame(
            rows, columns=list(dict.fromkeys(columns + list(rows[0] if rows else [])))
        )

    @classmethod
    def from_audiofolder(
        cls,
        directory: str | Path,
        scorer: ScorerLike | None = None,
        *,
        cache_dir: str | Path | None = None,
        max_seconds: float = 600.0,
    ) -> ClipPool:
        """Build a pool from an audiofolder directory, validating (and scoring) every clip.

        Args:
            directory: folder with ``metadata.csv`` or ``metadata.jsonl`` and the audio files.
            scorer: anything with ``score(list) -> list[ScoreResult]``, ``compare`` and ``info()``;
                None leaves the clips unscored.
            cache_dir: where validation and scores are cached; None disables the cache.
            max_seconds: longest accepted clip, seconds.

        Raises:
            PoolError: no metadata file, missing columns, or no usable clip at all.
        """
        return cls._build(*audiofolder_rows(directory), scorer, cache_dir, max_seconds)

    @classmethod
    def from_music_arena(
        cls,
        directory: str | Path,
        scorer: ScorerLike | None = None,
        *,
        cache_dir: str | Path | None = None,
        max_seconds: float = 600.0,
    ) -> ClipPool:
        """Build a pool from a folder in Music Arena's release layout (``battle_data/<batch>/``
        JSON + ``audio_files/<batch>/`` audio): one clip per released audio file, with the
        system, prompt and instrumental flag of the battle it came from.

        Battle records that cannot be read, and clips whose file is not on disk, are listed in
        :attr:`skipped`; unreleased clips (empty ``audio_a``/``audio_b``) have no file to serve.

        Raises:
            PoolError: not Music Arena's layout, or no usable clip at all.
        """
        return cls._build(*music_arena_rows(directory), scorer, cache_dir, max_seconds)

    @classmethod
    def _build(
        cls,
        root: Path,
        meta: pd.DataFrame,
        skipped: list[tuple[str, str]],
        scorer: ScorerLike | None,
        cache_dir: str | Path | None,
        max_seconds: float,
    ) -> ClipPool:
        cache = Path(cache_dir) / "pool" if cache_dir is not None else None
        clips, invalid = _validate(root, meta, cache, max_seconds)
        skipped = skipped + invalid
        if not clips:
            reasons = "; ".join(f"{name}: {why}" for name, why in skipped[:5])
            raise PoolError(f"no usable clip in {root} ({len(skipped)} skipped: {reasons}).")
        model_version, results = None, {}
        if scorer is not None:
            model_version, clips, results, failed = _score(clips, scorer, cache)
            skipped += failed
        for name, why in skipped:
            logger.warning("pool %s: skipped %s: %s", root, name, why)
        return cls(
            clips,
            root,
            skipped=skipped,
            model_version=model_version,
            results=results,
            cache=cache,
        )


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"is_instrumental={value!r} is not true/false")


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a torn or foreign cache file is recomputed, never trusted


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of one


def _validate(
    root: Path, meta: pd.DataFrame, cache: Path | None, max_seconds: float
) -> tuple[list[Clip], list[tuple[str, str]]]:
    from apex.audio import AudioError, load_audio

    clips: list[Clip] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for row in meta.to_dict("records"):
        name = str(row["file_name"])
        path = (root / name).resolve()
        clip_id = str(row.get("clip_id") or Path(name).stem)
        try:
            if not path.is_relative_to(root):
                raise ValueError("file_name points outside the pool folder")
            if clip_id in seen:
                raise ValueError(f"duplicate clip_id {clip_id!r}")
            if not path.is_file():
                raise ValueError("file not found")
            system = str(row["system"]).strip()
            if not system:
                raise ValueError("empty system")
            instrumental = _parse_bool(row["is_instrumental"])
            digest = sha256_of(path)
            entry = cache / "audio" / f"{digest}.json" if cache else None
            checked = _read_json(entry)
            if checked is None or checked.get("max_seconds") != max_seconds:
                audio = load_audio(path, max_seconds=max_seconds)
                checked = {"duration_s": audio.duration_s, "max_seconds": max_seconds}
                _write_json(entry, checked)
        except (AudioError, ValueError, OSError) as exc:
            skipped.append((name, str(exc)))
            continue
        seen.add(clip_id)
        prompt = row.get("prompt", "")
        clips.append(
            Clip(
                clip_id=clip_id,
                path=path,
                file_name=name,
                system=system,
                prompt="" if prompt is None or pd.isna(prompt) else str(prompt),
                is_instrumental=instrumental,
                duration_s=float(checked["duration_s"]),
                content_hash=digest,
            )
        )
    return clips, skipped


def model_key(info: dict[str, Any]) -> tuple[str, str]:
    """``(model_version, cache folder name)`` of a scorer from its ``info()`` dict."""
    version = f"{info.get('model_id', 'unknown')}@{info.get('version', '0')}"
    fingerprint = json.dumps([version, info.get("encoder_id")], sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", version)[:60]
    return version, f"{slug}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"


def _score(
    clips: list[Clip], scorer: ScorerLike, cache: Path | None
) -> tuple[str, list[Clip], dict[str, Any], list[tuple[str, str]]]:
    from dataclasses import replace

    version, key = model_key(scorer.info())
    folder = cache / key if cache else None
    done: dict[str, dict[str, Any]] = {}
    live: dict[str, Any] = {}
    todo = []
    for clip in clips:
        cached = _read_json(folder / f"{clip.content_hash}.json" if folder else None)
        if cached is not None:
            done[clip.clip_id] = cached
        else:
            todo.append(clip)
    failed: list[tuple[str, str]] = []
    for start in range(0, len(todo), _SCORE_BATCH):
        batch = todo[start : start + _SCORE_BATCH]
        for clip, result in zip(batch, _score_batch(scorer, batch, failed), strict=True):
            if result is None:
                continue
            live[clip.clip_id] = result
            done[clip.clip_id] = result.to_dict()
            _write_json(
                folder / f"{clip.content_hash}.json" if folder else None, done[clip.clip_id]
            )
    scored = [
        replace(c, result=done[c.clip_id], scores=dict(done[c.clip_id].get("scores", {})))
        for c in clips
        if c.clip_id in done
    ]
    results = {cid: live.get(cid) or _result_from_dict(d) for cid, d in done.items()}
    return version, scored, {k: v for k, v in results.items() if v is not None}, failed


def _score_batch(scorer: ScorerLike, batch: list[Clip], failed: list) -> list[Any]:
    try:
        return list(scorer.score([clip.path for clip in batch]))
    except Exception:  # isolate the bad clip below instead of failing the batch
        results = []
        for clip in batch:
            try:
                results.append(scorer.score([clip.path])[0])
            except Exception as exc:  # reported in pool.skipped, never hidden
                failed.append((clip.file_name, f"scoring failed: {exc}"))
                results.append(None)
        return results


def _result_from_dict(data: dict[str, Any]) -> Any:
    """Rebuild an ``apex.scorer.ScoreResult`` from its cached dict (None if apex has none)."""
    try:
        from apex.scorer import ScoreResult
    except ImportError:
        return None
    names = {f.name for f in fields(ScoreResult)}
    try:
        return ScoreResult(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        return None


def load_pool(settings: Settings, scorer: ScorerLike | None = None) -> ClipPool:
    """The pool ``settings.pool`` names: ``demo``; ``music-arena`` (Music Arena's public release
    from the Hub) or ``music-arena:<batch>[,<batch>...]`` (only those monthly batches, e.g.
    ``music-arena:02-2025SEP``: the full release is large); a local folder (audiofolder, or
    Music Arena's layout when it holds ``battle_data/``); or a Hub dataset id in either layout.

    Raises:
        PoolError: the folder does not exist, or a Hub dataset cannot be downloaded (offline);
            the message says which setting to change.
    """
    directory = pool_folder(settings)
    if (directory / "battle_data").is_dir():
        return ClipPool.from_music_arena(directory, scorer, cache_dir=settings.cache_dir)
    return ClipPool.from_audiofolder(directory, scorer, cache_dir=settings.cache_dir)
