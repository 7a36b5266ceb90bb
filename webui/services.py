"""The composition root: the app's services, built from :class:`~apex.settings.Settings` on a
background thread (so the page comes up at once), failed ones retried with backoff. No gradio here.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from apex.settings import Settings

log = logging.getLogger(__name__)

#: Imported whole before any start-up thread runs: the demo corpus renders with scipy, whose
#: array-API check reads ``sys.modules["torch"].Tensor`` (a half-imported torch failed the pool).
HEAVY_IMPORTS: tuple[str, ...] = ("torch", "scipy.signal")

#: Service name -> builder. A builder takes the settings and the services built so far.
Builder = Callable[[Settings, Mapping[str, Any]], Any]

#: First retry of a failed service after this many seconds, doubling up to the cap.
RETRY_FIRST_S, RETRY_MAX_S = 5.0, 300.0
#: Services whose failure does not fail the app (voting and scoring work without them).
OPTIONAL = ("sync", "refit")

#: What each service is, in words for the status line.
LABELS: dict[str, str] = {
    "store": "vote store",
    "scorer": "APEX scorer",
    "pool": "arena clip pool",
    "arena": "arena",
    "scoring": "pool scoring",
    "sync": "Hub sync",
    "refit": "refit worker",
}


class NotReady(RuntimeError):
    """A service is still warming up or failed to start; ``str(err)`` is meant for visitors."""


@dataclass(frozen=True)
class ServiceStatus:
    """Where one service stands: ``waiting``, ``warming``, ``ready``, ``failed`` or ``off``."""

    state: str = "waiting"
    detail: str = ""
    seconds: float | None = None


def _build_store(settings: Settings, built: Mapping[str, Any]) -> Any:
    from annotation.store import open_store

    return open_store(settings)


def _build_scorer(settings: Settings, built: Mapping[str, Any]) -> Any:
    import ctypes
    import ctypes.util

    from apex import load_scorer

    scorer = load_scorer(
        settings.model,
        encoder=settings.encoder,  # "auto" is load_scorer's default too
        device=settings.device,
        precision=settings.precision,
        settings=settings,
    )
    # Hand the C heap's free pages back to the OS (glibc's malloc_trim): loading MERT-95M frees
    # ~0.4 GB below glibc's mmap threshold (benchmarks/cold_start.py).
    libc = ctypes.util.find_library("c")
    if libc:
        with contextlib.suppress(OSError, AttributeError):  # not loadable, or not glibc
            ctypes.CDLL(libc).malloc_trim(0)
    return scorer


def _build_pool(settings: Settings, built: Mapping[str, Any]) -> Any:
    from annotation.pool import load_pool

    pool = load_pool(settings)  # headers only: scoring starts once the scorer is up
    pool.awaiting_scorer = True
    return pool


def _build_arena(settings: Settings, built: Mapping[str, Any]) -> Any:
    from annotation.arena import Arena

    arena = Arena(settings, pool=built["pool"], store=built["store"], scorer=built.get("scorer"))
    arena.warm_loudness()  # in the background: the arena is usable at once
    return arena


def _build_scoring(settings: Settings, built: Mapping[str, Any]) -> Any:
    pool, scorer = built["pool"], built["scorer"]
    pool.start_scoring(scorer, cache_dir=settings.cache_dir)
    if built.get("arena") is not None:
        built["arena"].attach_scorer(scorer)
    return pool


def _build_sync(settings: Settings, built: Mapping[str, Any]) -> Any:
    from annotation.sync import VoteSync

    # Restores an empty store from the Hub dataset first; Hub trouble never raises here.
    return VoteSync(settings, built["store"]).start()


def _build_refit(settings: Settings, built: Mapping[str, Any]) -> Any:
    if settings.refit_hours <= 0:
        return None  # APEX_REFIT_HOURS=0: refits are off; the About tab says so
    from annotation.refit_worker import RefitWorker

    if "scorer" not in built:
        raise RuntimeError("the refit needs the APEX scorer, which did not start")
    arena = built.get("arena")
    return RefitWorker(settings, store=built["store"], scorer=built["scorer"], arena=arena).start()


def default_builders() -> dict[str, Builder]:
    """The production builders, in the order they run (each may use the ones before it)."""
    return {
        "store": _build_store,
        "sync": _build_sync,  # before the arena, so a restored store is what voters add to
        "pool": _build_pool,
        "arena": _build_arena,  # battles from here on, before any clip is scored
        "scorer": _build_scorer,
        "scoring": _build_scoring,
        "refit": _build_refit,
    }


#: Which services each one needs; a failed dependency marks its dependants failed too.
DEPENDS: dict[str, tuple[str, ...]] = {
    "arena": ("pool", "store"),
    "scoring": ("scorer", "pool"),
    "sync": ("store",),
    "refit": ("store",),  # the scorer only when refits are on (checked by the builder)
}


class Services:
    """Holds the app's services and builds them in the background. ``builders``: name -> builder,
    in build order (default :func:`default_builders`); ``retry_s``: seconds before the first retry
    of a failed one, doubling up to :data:`RETRY_MAX_S`."""

    def __init__(
        self,
        settings: Settings,
        builders: Mapping[str, Builder] | None = None,
        *,
        retry_s: float = RETRY_FIRST_S,
    ) -> None:
        self.settings = settings
        self._builders = dict(default_builders() if builders is None else builders)
        self._built: dict[str, Any] = {}
        self._status = {name: ServiceStatus() for name in self._builders}
        self._lock = threading.Condition()  # notified whenever a status changes
        self._done = threading.Event()
        self._closing = threading.Event()
        self._retry_s = retry_s
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, background: bool = True) -> Services:
        """Build every service (on a daemon thread when ``background``), then retry failed ones."""
        if self._thread is not None:
            return self
        for module in HEAVY_IMPORTS:
            importlib.import_module(module)
        if not background:
            self._build_all()
        target = self._retry_failed if not background else self._build_and_retry
        self._thread = threading.Thread(target=target, name="apex-services", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every service was attempted; True when no required one failed."""
        self._done.wait(timeout)
        with self._lock:
            return self._done.is_set() and not any(
                s.state == "failed" for n, s in self._status.items() if n not in OPTIONAL
            )

    def close(self) -> None:
        """Stop the refit, the Hub sync (which pushes once more) and pool scoring, then close the
        store; all of them even when one raises (a bug: workers handle expected failures)."""
        self._closing.set()  # no more retries
        with contextlib.ExitStack() as stack:  # runs its callbacks last-in first-out
            for name in ("store", "pool", "sync", "refit"):
                service = self._built.get(name)
                for method in ("stop", "stop_scoring", "close"):
                    fn = getattr(service, method, None)
                    if callable(fn):
                        stack.callback(fn)
                        break

    def _build_all(self) -> None:
        try:
            for name, builder in self._builders.items():
                self._build_one(name, builder)
        finally:
            pool = self._built.get("pool")
            if hasattr(pool, "awaiting_scorer") and "scoring" not in self._built:
                pool.awaiting_scorer = False  # no model will come: reveals say so plainly
            with self._lock:
                self._done.set()
                self._lock.notify_all()

    def _build_and_retry(self) -> None:
        self._build_all()
        self._retry_failed()

    def _retry_failed(self) -> None:
        """Rebuild the failed services in build order, with doubling waits, until all are up or
        :meth:`close`."""
        delay, attempt = self._retry_s, 1
        while True:
            with self._lock:
                failed = [n for n in self._builders if n not in self._built]
                for name in failed:
                    detail = self._status[name].detail.split(" [retry ")[0]
                    retry = f"{detail} [retry {attempt} in {delay:.0f} s]"
                    self._status[name] = replace(self._status[name], state="failed", detail=retry)
                self._lock.notify_all()
            if not failed or self._closing.wait(delay):
                return
            for name in failed:
                self._build_one(name, self._builders[name])
            delay, attempt = min(2.0 * delay, RETRY_MAX_S), attempt + 1

    def _build_one(self, name: str, builder: Builder) -> None:
        missing = [d for d in DEPENDS.get(name, ()) if d in self._builders and d not in self._built]
        if missing:
            why = ", ".join(LABELS.get(d, d) for d in missing)
            self._set(name, ServiceStatus("failed", f"needs the {why}, which did not start"))
            return
        self._set(name, ServiceStatus("warming"))
        start = time.perf_counter()
        try:
            service = builder(self.settings, dict(self._built))
        except Exception as err:  # the start-up thread's boundary: the page stays up, says
            # what failed (status line, About tab), and independent services still start
            log.exception("starting the %s failed", LABELS.get(name, name))
            self._set(name, ServiceStatus("failed", f"{type(err).__name__}: {err}"))
            return
        seconds = time.perf_counter() - start
        with self._lock:
            self._built[name] = service
            state = "off" if service is None else "ready"
            self._status[name] = ServiceStatus(state, "", seconds)
            self._lock.notify_all()
        log.info("%s %s in %.1f s", LABELS.get(name, name), state, seconds)

    def _set(self, name: str, status: ServiceStatus) -> None:
        with self._lock:
            self._status[name] = status
            self._lock.notify_all()

    # ------------------------------------------------------------------ access
    def get(self, name: str) -> Any:
        """Return service ``name``, or raise :class:`NotReady` saying why it cannot be used yet."""
        with self._lock:
            if name in self._built:
                return self._built[name]
            status = self._status.get(name)
        label = LABELS.get(name, name)
        if status is None:
            raise NotReady(f"The {label} is not part of this app.")
        if status.state == "failed":
            raise NotReady(f"The {label} could not start: {status.detail}")
        raise NotReady(f"The {label} is still warming up; try again in a few seconds.")

    def wait_for(
        self, name: str, timeout: float | None = None, progress: Callable[..., Any] | None = None
    ) -> Any:
        """Service ``name``, waiting up to ``timeout`` seconds (default ``APEX_WARMUP_WAIT_S``)
        while it warms up, telling ``progress`` (a ``gr.Progress``) about once a second. Raises
        :class:`NotReady`: it failed, is not part of the app, or is still not ready in time."""
        timeout = self.settings.warmup_wait_s if timeout is None else timeout
        start = time.monotonic()
        while True:
            try:
                return self.get(name)
            except NotReady:
                with self._lock:
                    status = self._status.get(name)
                if status is None or status.state == "failed" or self._done.is_set():
                    raise
                waited = time.monotonic() - start
                if waited >= timeout:
                    raise NotReady(
                        f"The {LABELS.get(name, name)} is still warming up after {waited:.0f} s "
                        "of waiting; try again in a minute."
                    ) from None
            if progress is not None:
                line = self.status_line()
                progress(0.0, desc=f"Waiting for the app to warm up ({waited:.0f} s): {line}")
            with self._lock:
                if name not in self._built:
                    self._lock.wait(min(1.0, timeout - waited))

    def ready(self, name: str) -> bool:
        """True when ``name`` has been built (it may be ``None`` when switched off)."""
        with self._lock:
            return name in self._built

    def status(self) -> dict[str, ServiceStatus]:
        """A snapshot of every service's status."""
        with self._lock:
            return dict(self._status)  # frozen: a copy of the dict is a snapshot

    def status_line(self) -> str:
        """One line for the header: services still warming up or failed ("" if none)."""
        parts = []
        for name, st in self.status().items():
            if st.state in ("waiting", "warming"):
                parts.append(f"{LABELS.get(name, name)} warming up")
            elif st.state == "failed" and name not in OPTIONAL:
                parts.append(f"{LABELS.get(name, name)} failed ({st.detail})")
        with self._lock:
            pool = self._built.get("pool")
        progress = pool.scoring_progress() if pool is not None else None
        if progress and progress["active"] and "scoring" in self._built:
            parts.append(
                f"APEX scoring the arena clips in the background ({progress['scored']} / "
                f"{progress['total']} done; battles are open)"
            )
        return "; ".join(parts)

    @property
    def scorer(self) -> Any:
        """The :class:`apex.Scorer` (raises :class:`NotReady`)."""
        return self.get("scorer")

    @property
    def arena(self) -> Any:
        """The :class:`annotation.arena.Arena` (raises :class:`NotReady`)."""
        return self.get("arena")

    @property
    def store(self) -> Any:
        """The vote store (raises :class:`NotReady`)."""
        return self.get("store")


def build_services(settings: Settings) -> Services:
    """Create the production services and start building them."""
    return Services(settings).start()
