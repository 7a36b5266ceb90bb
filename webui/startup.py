"""Process-level start-up helpers for :class:`webui.services.Services`: heavy imports, heap trim.

Nothing here imports gradio.
"""

from __future__ import annotations

import importlib

#: Imported whole before any start-up thread runs: the UI thread imports torch while the demo
#: corpus renders with scipy, whose array-API check reads ``sys.modules["torch"].Tensor`` (a
#: half-imported torch there failed the pool at random).
HEAVY_IMPORTS: tuple[str, ...] = ("torch", "scipy.signal")


def import_heavy_modules() -> None:
    """Import every module of :data:`HEAVY_IMPORTS` on the calling thread (seconds, once)."""
    for module in HEAVY_IMPORTS:
        importlib.import_module(module)


def trim_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim``).

    Loading MERT-95M frees ~0.4 GB of float32 staging tensors (each under glibc's mmap
    threshold, so they sit in the heap), which the process would otherwise keep for good; the
    first forward then stacks its activations on top (measured in benchmarks/cold_start.py).
    Elsewhere than glibc there is nothing to trim.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
