"""The arena's clip pool: AI-generated clips with their system, prompt and APEX scores. Opening
one checks audio headers only; scores come later, in the background (``scoring``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from annotation.pool.check import Clip, content_hash, validate_rows
from annotation.pool.scoring import ScorerLike, ScoringQueue
from annotation.pool.sources import PoolError

__all__ = ["ClipPool"]

logger = logging.getLogger(__name__)

_REQUIRED = ("file_name", "system", "is_instrumental")


class ClipPool:
    """Validated clips by id whose scores fill in as they come (thread-safe: the scoring queue
    records scores while the arena reads clips). ``skipped``: ``(file_name, reason)`` of every
    clip left out; ``model_version``: the scorer of clips given with scores; ``results``: live
    ``ScoreResult`` objects by clip id (for ``scorer.compare``)."""

    def __init__(
        self,
        clips: Sequence[Clip],
        root: Path,
        *,
        skipped: Sequence[tuple[str, str]] = (),
        model_version: str | None = None,
        results: dict[str, Any] | None = None,
        description: str = "",
    ) -> None:
        self._clips = {
            c.clip_id: c
            if c.model_version or not c.scores
            else replace(c, model_version=model_version)
            for c in clips
        }
        self.root = Path(root)
        self.skipped = list(skipped)
        self.description = description
        self._model_version = model_version
        self._results = dict(results or {})
        self._errors: dict[str, str] = {}
        self._changed = threading.Condition()
        self._queue: Any = None
        self._early: list[str] = []  # battle clips asked for before scoring started
        self._check_cache: Path | None = None  # header cache, which keeps content hashes
        #: True while a scorer is expected but not yet started (the app's model warms up).
        self.awaiting_scorer = False

    def __len__(self) -> int:
        return len(self._clips)

    def __iter__(self) -> Iterator[Clip]:
        with self._changed:
            return iter(list(self._clips.values()))

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._clips

    def __getitem__(self, clip_id: str) -> Clip:
        try:
            return self._clips[clip_id]
        except KeyError:
            raise KeyError(f"clip {clip_id!r} is not in the pool at {self.root}") from None

    @property
    def model_version(self) -> str | None:
        """The version the pool is being scored with (the newest scorer), or None."""
        queue = self._queue
        return queue.version if queue is not None else self._model_version

    @property
    def score_errors(self) -> dict[str, str]:
        """Clip id -> why the current model could not score it (the clip stays servable)."""
        with self._changed:
            return dict(self._errors)

    def content_hash(self, clip_id: str) -> str:
        """sha256 hex of the clip's file, computed when first asked for."""
        clip = self[clip_id]
        if clip.content_hash:
            return clip.content_hash
        digest = content_hash(clip.path, self._check_cache)
        with self._changed:
            self._clips[clip_id] = replace(self._clips[clip_id], content_hash=digest)
        return digest

    def result(self, clip_id: str) -> Any:
        """The clip's ``ScoreResult`` for ``scorer.compare``, or None when it is not scored."""
        self[clip_id]  # unknown ids raise KeyError with the pool's folder
        with self._changed:
            return self._results.get(clip_id)

    def frame(self) -> pd.DataFrame:
        """One row per clip: ``clip_id``, ``system``, ``prompt``, ``is_instrumental``,
        ``duration_s``, ``file_name`` and the seven scores when known (the sampler's input)."""
        columns = ["clip_id", "system", "prompt", "is_instrumental", "duration_s", "file_name"]
        rows = [{**{name: getattr(c, name) for name in columns}, **c.scores} for c in self]
        names = list(dict.fromkeys(columns + [k for row in rows for k in row]))
        return pd.DataFrame(rows, columns=names)

    def record_score(self, clip_id: str, result: dict[str, Any], live: Any, version: str) -> None:
        """Store (replace) a clip's score: ``ScoreResult.to_dict()``, the live object or None,
        and the version of the model that produced it."""
        with self._changed:
            clip = self._clips[clip_id]
            self._clips[clip_id] = replace(
                clip, scores=dict(result.get("scores", {})), result=result, model_version=version
            )
            self._results[clip_id] = live if live is not None else _rebuilt(result)
            self._errors.pop(clip_id, None)
            self._changed.notify_all()

    def record_error(self, clip_id: str, reason: str) -> None:
        """Note that the current model could not score ``clip_id`` (older scores are kept)."""
        with self._changed:
            self._errors[clip_id] = reason
            self._changed.notify_all()
        logger.warning("pool %s: cannot score %s: %s", self.root, clip_id, reason)

    def start_scoring(self, scorer: ScorerLike, *, cache_dir: str | Path | None = None) -> None:
        """Score every clip in the background with ``scorer`` (cached scores first); returns at
        once. Called again with a new model, it re-scores every clip, battle clips first (old
        scores stay until replaced)."""
        if self._queue is not None:
            self._queue.switch(scorer)
            return
        cache = Path(cache_dir) / "pool" if cache_dir is not None else None
        self._queue = ScoringQueue(self, scorer, cache)
        self._queue.urgent(self._early)  # battles issued while the model loaded go first
        self.awaiting_scorer = False
        self._queue.start()

    def prioritize(self, clip_ids: Iterable[str]) -> None:
        """Score these clips (a battle's two) before the rest, once scoring runs."""
        ids = [cid for cid in clip_ids if cid in self._clips]
        if self._queue is not None:
            self._queue.urgent(ids)
        else:
            self._early.extend(ids)

    def scoring_progress(self) -> dict[str, Any]:
        """``{"total", "scored" (by the current model), "failed", "model_version", "active"}``."""
        version = self.model_version
        with self._changed:
            scored = sum(1 for c in self._clips.values() if c.scored_by(version))
            failed = len(self._errors)
        return {
            "total": len(self._clips),
            "scored": scored,
            "failed": failed,
            "model_version": version,
            "active": self.awaiting_scorer if self._queue is None else scored + failed < len(self),
        }

    def missing_scores(self, clip_a: str, clip_b: str) -> tuple[bool, str]:
        """``(pending, note)`` for a battle whose clips are not both scored: pending while the
        queue may still score them; the note says why APEX's view is missing."""
        errors = self.score_errors
        failed = [c for c in (clip_a, clip_b) if c in errors]
        if failed:
            return False, f"APEX could not score this battle's clips: {errors[failed[0]]}"
        if self.scoring_progress()["active"]:
            return True, (
                "APEX is still scoring these clips (the arena opened before the whole pool was "
                "scored); its view appears here as soon as they are done."
            )
        return False, "APEX has no scores for these clips (no model is serving)."

    def wait_scored(
        self, clip_ids: Iterable[str] | None = None, timeout: float | None = None
    ) -> bool:
        """Block until these clips (default: all) are scored by the current model or failed;
        False at ``timeout`` seconds. PoolError, before waiting, for an id not in the pool."""
        ids = list(self._clips) if clip_ids is None else list(clip_ids)
        unknown = [i for i in ids if i not in self._clips]
        if unknown:
            raise PoolError(
                f"cannot wait for clip(s) {', '.join(map(repr, unknown[:5]))}: not in the pool at "
                f"{self.root}; pass ids of this pool's clips (see iter(pool) or pool.frame())."
            )
        deadline = None if timeout is None else time.monotonic() + timeout

        def done() -> bool:
            version = self.model_version
            return all(i in self._errors or self._clips[i].scored_by(version) for i in ids)

        with self._changed:
            while not done():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # polled too: a switch of model changes what "scored" means without a notify
                self._changed.wait(1.0 if remaining is None else remaining)
            return True

    def stop_scoring(self) -> None:
        """Stop the background queue (scores recorded so far stay)."""
        if self._queue is not None:
            self._queue.stop()

    @classmethod
    def from_audiofolder(cls, directory: str | Path, **options: Any) -> ClipPool:
        """A pool from a folder with ``metadata.csv`` or ``.jsonl`` (``file_name``, ``system``,
        ``prompt``, ``is_instrumental``, optional ``clip_id``) and the audio files. ``options``:
        ``cache_dir`` (header and score cache; default none), ``max_seconds`` (longer clips are
        skipped; default 600 s), ``description`` (where the clips come from, for the UI).

        Raises:
            PoolError: no such folder, no metadata file, missing columns, or no usable clip.
        """
        root = Path(directory).resolve()
        if not root.is_dir():
            raise PoolError(f"pool folder {root} does not exist; point APEX_POOL at a folder.")
        if (root / "metadata.csv").is_file():
            meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
        elif (root / "metadata.jsonl").is_file():
            meta = pd.read_json(root / "metadata.jsonl", lines=True, dtype=False)
        else:
            raise PoolError(
                f"{root} has no metadata.csv or metadata.jsonl; add one with the columns "
                f"{', '.join(_REQUIRED)}, prompt (the audiofolder convention)."
            )
        missing = [c for c in _REQUIRED if c not in meta.columns]
        if missing:
            raise PoolError(
                f"the metadata of {root} lacks column(s) {', '.join(missing)}; add them."
            )
        return cls._build(root, meta, [], **options)

    @classmethod
    def from_music_arena(cls, directory: str | Path, **options: Any) -> ClipPool:
        """As :meth:`from_audiofolder`, every released clip on disk in Music Arena's layout
        (unreadable records and missing files go to :attr:`skipped`); PoolError when the folder
        is not that layout or no clip is usable."""
        from apex.sources.music_arena import MusicArenaError, read_release

        try:
            release = read_release(directory)
        except MusicArenaError as exc:
            raise PoolError(str(exc)) from exc
        clips = release.clips()
        on_disk = clips["has_audio"]
        skipped = list(release.skipped)
        skipped += [(name, "audio file not on disk") for name in clips.loc[~on_disk, "file_name"]]
        meta = clips[on_disk].drop(columns=["has_audio", "batch", "duration_s"])
        return cls._build(release.root, meta, skipped, **options)

    @classmethod
    def _build(
        cls,
        root: Path,
        meta: pd.DataFrame,
        skipped: list[tuple[str, str]],
        cache_dir: str | Path | None = None,
        max_seconds: float = 600.0,
        description: str = "",
    ) -> ClipPool:
        cache = Path(cache_dir) / "pool" if cache_dir is not None else None
        clips, invalid = validate_rows(root, meta, cache, max_seconds)
        skipped = skipped + invalid
        if not clips:
            reasons = "; ".join(f"{name}: {why}" for name, why in skipped[:5])
            raise PoolError(f"no usable clip in {root} ({len(skipped)} skipped: {reasons}).")
        for name, why in skipped:
            logger.warning("pool %s: skipped %s: %s", root, name, why)
        pool = cls(clips, root, skipped=skipped, description=description)
        pool._check_cache = cache
        return pool


def _rebuilt(data: dict[str, Any]) -> Any:
    """The ``ScoreResult`` of a cached dict; None for a stale entry (the clip is scored again)."""
    from apex.scorer import ScoreResult

    try:
        return ScoreResult.from_dict(data)
    except KeyError as err:
        logger.warning("stale score cache entry ignored (%s); scoring the clip again", err)
        return None
