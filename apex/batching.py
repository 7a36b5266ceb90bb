"""Shared encoder forwards for concurrent scoring requests: one encoder thread takes every waiting
request, lower ``priority`` first, up to ``max_clips`` clips per ``encode_batch`` (one thread also
keeps activations in one C-heap arena). On ZeroGPU each batch runs under ``@spaces.GPU``."""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from apex.audio import Audio
from apex.encoders.base import Embedding, Encoder
from apex.settings import parse_bool


def on_zero_gpu() -> bool:
    """Whether this process runs on a Hugging Face Space with ZeroGPU hardware."""
    return bool(parse_bool(os.environ.get("SPACES_ZERO_GPU", "")))


#: Encoders by key: ``spaces.GPU`` pickles its arguments, so it gets a key, never the model.
_ENCODERS: weakref.WeakValueDictionary[int, Encoder] = weakref.WeakValueDictionary()


def _encode_batch(key: int, audios: list[Audio]) -> list[Embedding]:
    return _ENCODERS[key].encode_batch(audios)


# On ZeroGPU the batch runs under ``@spaces.GPU``, decorated at import as the docs show.
if on_zero_gpu():
    import spaces  # the Space's own package; present on every ZeroGPU Space

    _encode_batch = spaces.GPU(_encode_batch)


@dataclass(order=True)
class _Request:
    priority: int
    seq: int
    audios: Sequence[Audio] = field(compare=False)
    done: bool = field(default=False, compare=False)
    result: list[Embedding] | None = field(default=None, compare=False)
    error: BaseException | None = field(default=None, compare=False)


class EncodeBatcher:
    """Coalesces concurrent :meth:`encode` calls into shared ``encoder.encode_batch`` calls of
    at most ``max_clips`` clips (a larger request runs alone), waiting up to ``gather_s`` seconds
    for a batch to fill; ``batches`` counts the calls."""

    def __init__(self, encoder: Encoder, *, max_clips: int = 8, gather_s: float = 0.005) -> None:
        if max_clips < 1:
            raise ValueError(f"max_clips must be >= 1, got {max_clips}")
        self.encoder = encoder
        self.max_clips = max_clips
        self.gather_s = gather_s
        self.batches = 0
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._worker: threading.Thread | None = None
        self._seq = itertools.count()
        _ENCODERS[id(encoder)] = encoder

    def encode(self, audios: Sequence[Audio], *, priority: int = 0) -> list[Embedding]:
        """Embeddings of ``audios`` (one per clip, in order), computed in a shared batch; raises
        what ``encode_batch`` raises for these clips (a failed batch is retried per request)."""
        if not audios:
            return []
        request = _Request(priority, next(self._seq), list(audios))
        with self._cond:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="apex-encoder", daemon=True)
                self._worker.start()
            heapq.heappush(self._pending, request)
            self._cond.notify_all()
            self._cond.wait_for(lambda: request.done)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _work(self) -> None:
        """The encoder thread: one batch after another, as long as the process lives."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending)
                batch = self._gather()
            try:
                self._run(batch)
            finally:
                with self._cond:
                    for request in batch:  # a bug in _run must not leave callers waiting
                        if not request.done:
                            request.error = RuntimeError("the encoder thread failed")
                            request.done = True
                    self._cond.notify_all()

    def _gather(self) -> list[_Request]:
        """Wait up to ``gather_s`` for a full batch, then pop requests in priority order."""
        self._cond.wait_for(
            lambda: sum(len(r.audios) for r in self._pending) >= self.max_clips, self.gather_s
        )
        batch, clips = [], 0
        while self._pending and (
            not batch or clips + len(self._pending[0].audios) <= self.max_clips
        ):
            request = heapq.heappop(self._pending)
            batch.append(request)
            clips += len(request.audios)
        return batch

    def _run(self, batch: list[_Request]) -> None:
        """Encode a batch outside the lock; results (or each request's own error) set on it."""
        audios = [audio for request in batch for audio in request.audios]
        self.batches += 1
        try:
            embeddings = _encode_batch(id(self.encoder), audios)
        except Exception as exc:  # handed back to the caller(s), who re-raise it
            if len(batch) == 1:
                batch[0].error, batch[0].done = exc, True
                return
            for request in batch:  # isolate the request that failed
                self.batches += 1
                try:
                    request.result = _encode_batch(id(self.encoder), list(request.audios))
                except Exception as err:  # handed back to this request's own caller
                    request.error = err
                request.done = True
            return
        start = 0
        for request in batch:
            request.result = embeddings[start : start + len(request.audios)]
            start += len(request.audios)
            request.done = True
