"""The pool's background scoring queue: every clip scored once per model. An *urgent* lane scores
issued battles' clips; a *background* lane walks the rest (unscored before re-scores) and waits
while battle clips do. Scores are cached as ``<cache>/<model key>/<sha256>.json``."""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from annotation.pool.check import read_json, write_json
from apex.audio import AudioError
from apex.files import sha256_text

if TYPE_CHECKING:
    from annotation.pool.clip_pool import ClipPool

logger = logging.getLogger(__name__)

#: Priorities handed to ``scorer.score`` (lower first; 0 is a person waiting on the Score tab).
URGENT, BACKGROUND, RESCORE = 1, 2, 3
#: Most clips per scorer call (also capped by the scorer's ``max_batch``, 1 on CPU), so a battle's
#: clips wait for at most one such call.
BATCH_CLIPS = 4
#: What a scorer raises for a clip it cannot score (bad audio, a file gone); the clip is
#: recorded on the pool and stays servable. Anything else is a bug and is raised.
CLIP_ERRORS: tuple[type[Exception], ...] = (AudioError, OSError)


class ScorerLike(Protocol):
    """What the pool and the arena use of :class:`apex.scorer.Scorer` (duck-typed)."""

    def score(self, inputs: Sequence[Any], *, priority: int = 0) -> list[Any]: ...
    def compare(self, a: Any, b: Any) -> float: ...
    def info(self) -> dict[str, Any]: ...


def model_key(info: dict[str, Any]) -> tuple[str, str]:
    """``(model_version, cache folder name)`` of a scorer from its ``info()`` dict."""
    version = f"{info.get('model_id', 'unknown')}@{info.get('version', '0')}"
    fingerprint = json.dumps([version, info.get("encoder_id")], sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", version)[:60]
    return version, f"{slug}-{sha256_text(fingerprint)[:12]}"


class ScoringQueue:
    """Scores ``pool``'s clips with ``scorer`` in two lanes (see the module docstring); ``cache``:
    the score cache root (``<cache_dir>/pool``), or None."""

    def __init__(self, pool: ClipPool, scorer: ScorerLike, cache: Path | None) -> None:
        self.pool = pool
        self.cache = cache
        self.batch = max(1, min(BATCH_CLIPS, int(getattr(scorer, "max_batch", BATCH_CLIPS))))
        self._cond = threading.Condition()
        self._urgent: deque[str] = deque()
        self._heap: list[tuple[int, int, str]] = []
        self._seq = itertools.count()
        self._inflight: set[str] = set()
        self._urgent_busy = False
        self._failed: set[str] = set()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self.switch(scorer, BACKGROUND)

    def switch(self, scorer: ScorerLike, priority: int = RESCORE) -> None:
        """Make ``scorer`` current and queue every clip it has not scored yet (old scores stay
        until replaced)."""
        version, key = model_key(scorer.info())
        with self._cond:
            # version: "<model id>@<version>" of the current scorer (ClipPool.model_version)
            self._scorer, self.version = scorer, version
            self._folder = self.cache / key if self.cache is not None else None
            self._failed.clear()
            for clip in self.pool:
                heapq.heappush(self._heap, (priority, next(self._seq), clip.clip_id))
            self._cond.notify_all()

    def start(self) -> None:
        """Start both lanes (daemon threads)."""
        for name, urgent in (("urgent", True), ("background", False)):
            thread = threading.Thread(
                target=self._lane, args=(urgent,), name=f"pool-scoring-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the lanes after the batch in flight (waiting up to 30 s for each)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(30.0)

    def urgent(self, clip_ids: list[str]) -> None:
        """Score these clips next (a battle's two)."""
        with self._cond:
            self._urgent.extend(clip_ids)
            self._cond.notify_all()

    def _lane(self, urgent: bool) -> None:
        while True:
            with self._cond:
                while not self._stopped and not (ids := self._take(urgent)):
                    self._cond.wait()
                if self._stopped:
                    return
                self._inflight |= set(ids)
                self._urgent_busy = self._urgent_busy or urgent
                job = (self._scorer, self.version, self._folder)
            try:
                self._score(ids, *job, priority=URGENT if urgent else BACKGROUND)
            except Exception as exc:  # a bug (clip errors are recorded in _score): the lane lives
                # on, and every clip of the batch shows it, so the pool never empties silently.
                logger.exception("pool scoring failed for %s (a bug, not a bad clip)", ids)
                with self._cond:
                    self._failed |= set(ids)
                for clip_id in ids:
                    self.pool.record_error(clip_id, f"scoring failed (a bug): {exc!r}")
            finally:
                with self._cond:
                    self._inflight -= set(ids)
                    if urgent:
                        self._urgent_busy = False
                    self._cond.notify_all()

    def _needs(self, clip_id: str, taken: list[str]) -> bool:
        busy = clip_id in self._inflight or clip_id in self._failed or clip_id in taken
        return not busy and not self.pool[clip_id].scored_by(self.version)

    def _take(self, urgent: bool) -> list[str]:
        """Clip ids to score next (lock held): all pending urgent ones, or a background batch."""
        ids: list[str] = []
        if urgent:
            while self._urgent:
                if self._needs(clip_id := self._urgent.popleft(), ids):
                    ids.append(clip_id)
        elif not (self._urgent or self._urgent_busy):  # battle clips first
            while self._heap and len(ids) < self.batch:
                if self._needs(clip_id := heapq.heappop(self._heap)[2], ids):
                    ids.append(clip_id)
        return ids

    def _score(
        self, ids: list[str], scorer: Any, version: str, folder: Path | None, *, priority: int
    ) -> None:
        """Cached scores first, then one scorer call for the rest (bad clips isolated)."""
        todo = []
        for clip_id in ids:
            self.pool.content_hash(clip_id)  # hashed when first needed, not at start-up
            clip = self.pool[clip_id]
            cached = read_json(folder / f"{clip.content_hash}.json" if folder else None)
            if cached is not None:
                self.pool.record_score(clip_id, cached, None, version)
            else:
                todo.append(clip)
        chunks = [todo[i : i + self.batch] for i in range(0, len(todo), self.batch)]
        for clip, result, error in (
            r for c in chunks for r in _score_isolated(scorer, c, priority)
        ):
            if result is None:
                with self._cond:
                    self._failed.add(clip.clip_id)
                self.pool.record_error(clip.clip_id, f"scoring failed: {error}")
                continue
            data = result.to_dict()
            # A model swapped in mid-batch labels its own results, not cached as ours.
            model_id = getattr(result, "model_id", "")
            produced = f"{model_id}@{getattr(result, 'model_version', '')}" if model_id else version
            if produced == version:
                write_json(folder / f"{clip.content_hash}.json" if folder else None, data)
            self.pool.record_score(clip.clip_id, data, result, produced)


def _score_isolated(scorer: Any, clips: list[Any], priority: int) -> list[tuple[Any, Any, Any]]:
    """``(clip, result or None, error or None)`` per clip: one call for all, on failure one per clip
    (a bad file must not cost its batch-mates their scores)."""
    try:
        results = scorer.score([clip.path for clip in clips], priority=priority)
        return [(clip, result, None) for clip, result in zip(clips, results, strict=True)]
    except CLIP_ERRORS as exc:
        if len(clips) == 1:
            return [(clips[0], None, exc)]
    logger.info("a pool batch failed; scoring its %d clips one by one", len(clips))
    return [out for clip in clips for out in _score_isolated(scorer, [clip], priority)]
