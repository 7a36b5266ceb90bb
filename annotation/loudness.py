"""Loudness-matched playback: each arena clip measured (ITU-R BS.1770-4 LUFS, 4x true peak dBTP)
and served as a 16-bit copy with one static gain to a common loudness, its true peak under a
ceiling; copies and their JSON sidecars are cached by content hash."""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf
from scipy.signal import resample_poly

from apex.files import atomic_path, sha256_file, sha256_text, write_json_atomic

#: Oversampling of the true-peak meter (BS.1770-4 Annex 2 describes 4x for 48 kHz signals).
TRUE_PEAK_OVERSAMPLE = 4
#: Below this integrated loudness (the BS.1770 absolute gate) a clip counts as silent: no gain.
SILENCE_LUFS = -70.0
_SUBTYPE = "PCM_16"
#: Changes whenever the way copies are made changes, so old copies are not reused by mistake.
_RECIPE = "gain-v1"
_LOCK_STRIPES = 16

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loudness:
    """Integrated loudness, LUFS, and 4x-oversampled true peak, dBTP (dB relative to full scale
    1.0), of one signal; both None for a silent one."""

    lufs: float | None
    true_peak_dbtp: float | None


@dataclass(frozen=True)
class ServedClip:
    """What the arena plays for one clip: ``path`` (the matched copy, or the original when
    ``matched`` is False: matching off, a silent or unmeasurable clip), the ``original`` loudness
    (what votes record), the ``gain_db`` applied, and whether this call ``encoded`` the copy."""

    path: Path
    original: Loudness
    gain_db: float = 0.0
    matched: bool = False
    encoded: bool = False


def _as_2d(samples: np.ndarray) -> np.ndarray:
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"samples must be [T] or [T, C] with T > 0, got shape {data.shape}")
    return data


def true_peak_dbtp(samples: np.ndarray) -> float:
    """True peak of ``samples`` ([T] or [T, C], full scale 1.0), dBTP (-inf for all zeros); the
    oversampling filter is relative to the sample rate, so the rate is not needed."""
    data = _as_2d(samples)
    over = resample_poly(data, TRUE_PEAK_OVERSAMPLE, 1, axis=0)
    peak = max(float(np.max(np.abs(over))), float(np.max(np.abs(data))))
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def measure(samples: np.ndarray, rate: int) -> Loudness:
    """Integrated loudness (LUFS) and true peak (dBTP) of ``samples`` ([T] or [T, C], at ``rate``);
    ValueError when shorter than one 400 ms gating block or over 5 channels (BS.1770's limit)."""
    data = _as_2d(samples)
    if data.shape[0] < int(0.4 * rate):
        raise ValueError(
            f"a clip of {data.shape[0] / rate:.2f} s is shorter than one 400 ms loudness block"
        )
    if data.shape[1] > 5:
        raise ValueError(f"BS.1770 loudness covers at most 5 channels, got {data.shape[1]}")
    lufs = float(pyloudnorm.Meter(rate).integrated_loudness(data))
    if not math.isfinite(lufs) or lufs < SILENCE_LUFS:
        return Loudness(None, None)
    return Loudness(lufs, true_peak_dbtp(data))


class LoudnessMatcher:
    """Measures arena clips and serves copies at ``target_lufs`` (LUFS) with their true peak under
    ``max_true_peak_dbtp`` (dBTP), each made once and cached in ``folder``. ``enabled=False``
    serves the originals, still measured so votes record their loudness."""

    def __init__(
        self,
        folder: str | Path,
        *,
        target_lufs: float = -16.0,
        max_true_peak_dbtp: float = -1.0,
        enabled: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.target_lufs = float(target_lufs)
        self.max_true_peak_dbtp = float(max_true_peak_dbtp)
        self.enabled = enabled
        self._memo: dict[str, ServedClip] = {}
        self._locks = tuple(threading.Lock() for _ in range(_LOCK_STRIPES))

    def serve(self, path: str | Path, content_hash: str = "") -> ServedClip:
        """The file to play for the clip at ``path`` (``content_hash``: its sha256, if known):
        measured and matched on the first call, cached on disk and in memory after. A clip with
        no BS.1770 measure (:func:`measure`'s ValueError) is played as it is, loudness unknown."""
        path = Path(path)
        digest = content_hash or sha256_file(path)
        known = self._memo.get(digest)  # one dict read or write at a time is thread-safe
        if known is not None and known.path.exists():
            return known
        try:
            with self._locks[int(digest[:8], 16) % _LOCK_STRIPES]:
                result = self._from_disk(path, digest) or self._encode(path, digest)
        except ValueError as exc:
            logger.warning("clip %s is played unmatched: %s", path, exc)
            return ServedClip(path, Loudness(None, None))
        self._memo[digest] = replace(result, encoded=False)
        return result

    def warm(self, clips: Iterable[tuple[str | Path, str]]) -> threading.Thread:
        """Measure and match ``(path, content_hash)`` clips on a daemon thread (about a second of
        CPU each), so first battles find them ready; battles meanwhile match their own."""

        def run() -> None:
            for path, content_hash in clips:
                self.serve(path, content_hash)

        thread = threading.Thread(target=run, name="apex-loudness", daemon=True)
        thread.start()
        return thread

    def _paths(self, digest: str) -> tuple[Path, Path]:
        """(matched copy, its sidecar), named by the target and whether matching is on."""
        recipe = f"{digest}|{self.target_lufs:.3f}|{self.max_true_peak_dbtp:.3f}|{_RECIPE}"
        key = sha256_text(recipe if self.enabled else f"{recipe}|off")[:32]
        return self.folder / f"matched-{key}.wav", self.folder / f"matched-{key}.json"

    def _from_disk(self, path: Path, digest: str) -> ServedClip | None:
        copy, sidecar = self._paths(digest)
        if not sidecar.exists():
            return None
        info = json.loads(sidecar.read_text(encoding="utf-8"))
        original = Loudness(**info["source"])
        if not info["matched"]:  # silent, or matching off: served as it is
            return ServedClip(path, original)
        if not copy.exists():
            return None
        return ServedClip(copy, original, float(info["gain_db"]), matched=True)

    def _encode(self, path: Path, digest: str) -> ServedClip:
        samples, rate = sf.read(path, dtype="float64", always_2d=True)
        original = measure(samples, rate)
        self.folder.mkdir(parents=True, exist_ok=True)
        copy, sidecar = self._paths(digest)
        served = ServedClip(path, original)  # silent, or matching off
        if self.enabled and original.lufs is not None:
            # The gain to the target loudness, less if the true peak would pass the ceiling.
            peak = original.true_peak_dbtp
            gain_db = min(self.target_lufs - original.lufs, self.max_true_peak_dbtp - peak)
            gained = samples * 10.0 ** (gain_db / 20.0)
            with atomic_path(copy) as partial:  # a concurrent battle never sees half a file
                sf.write(partial, gained, rate, subtype=_SUBTYPE, format="WAV")
            served = ServedClip(copy, original, gain_db, matched=True, encoded=True)
        info = {"source": asdict(original), "gain_db": served.gain_db, "matched": served.matched}
        write_json_atomic(sidecar, info, indent=None)
        return served
