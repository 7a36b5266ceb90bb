"""Decoding ahead of the encoder in a pool of ``spawn`` worker processes (the local engine).

A worker that dies (a libsndfile crash, the OOM killer) breaks the whole pool; it is rebuilt and
the item at the head of the queue decoded alone: if it kills its process again it becomes an
error record (stage ``decode``). ``spawn``, because the parent's torch (maybe CUDA) state cannot
be forked; callers need the ``__main__`` guard.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

from apex.embed.records import decode_item
from apex.lifeline import exit_with_parent

_CRASH_REASON = (
    "the decoding process died on this file (a decoder crash, or out of memory); check or "
    "re-encode the file (e.g. `ffmpeg -i in -ar 24000 out.wav`)"
)


def decoded_items(
    pending: list[dict[str, Any]],
    sample_rate: int,
    max_seconds: float,
    workers: int,
    ahead: int,
    decode: Callable[[dict[str, Any], int, float], dict[str, Any]] = decode_item,
) -> Iterator[dict[str, Any]]:
    """Yield ``decode(item, sample_rate Hz, max_seconds)`` of every pending item, in order.

    ``workers``: decoding processes (0: decode here); ``ahead``: items submitted ahead of the one
    consumed (the read-ahead bound); ``decode``: a module-level function (pickled to workers).
    """
    if workers == 0:
        for item in pending:
            yield decode(item, sample_rate, max_seconds)
        return
    todo = collections.deque(pending)
    queue: collections.deque[tuple[dict[str, Any], Future]] = collections.deque()
    pool = _new_pool(workers)
    try:
        while todo or queue:
            while todo and len(queue) < ahead:
                item = todo.popleft()
                queue.append((item, pool.submit(decode, item, sample_rate, max_seconds)))
            item, future = queue.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                pool.shutdown(wait=True, cancel_futures=True)
                pool = _new_pool(workers)
                try:  # alone in a fresh pool: a crash now proves the file is the cause
                    result = pool.submit(decode, item, sample_rate, max_seconds).result()
                except BrokenProcessPool:
                    result = {**item, "stage": "decode", "reason": _CRASH_REASON}
                    pool.shutdown(wait=True)  # the culprit broke this pool too
                    pool = _new_pool(workers)
                # Everything else in flight died with the pool: decode it again.
                todo.extendleft(reversed([queued for queued, _ in queue]))
                queue.clear()
            yield result
    finally:  # also when the consumer stops early: do not decode the read-ahead for nothing
        pool.shutdown(wait=False, cancel_futures=True)


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def _init_worker(parent_pid: int) -> None:
    """Exit with the job (a killed job runs nothing to shut the pool down, and each worker
    holds hundreds of MB); one torch thread, as processes are the parallelism."""
    exit_with_parent(parent_pid)
    import torch

    torch.set_num_threads(1)
