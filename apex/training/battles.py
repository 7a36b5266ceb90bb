"""Arena votes as battles between embedded clips (index pairs, targets, times); the time split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from apex.tasks import A_WIN_SHARE, PREFERENCES
from apex.training.data import DataError


@dataclass
class Battles:
    """Votes on pairs of embedded clips, each ``[P]``: ``a``, ``b`` song indices into
    :attr:`EngagementData.song_x`; ``y`` float32 P(A beats B): 1 (A), 0 (B), 0.5 (TIE);
    ``timestamp`` epoch seconds (float64); ``is_instrumental`` bool (False when unknown)."""

    a: np.ndarray
    b: np.ndarray
    y: np.ndarray
    timestamp: np.ndarray
    is_instrumental: np.ndarray

    def __len__(self) -> int:
        return len(self.a)

    def take(self, idx: np.ndarray) -> Battles:
        """The battles at positions ``idx``."""
        return Battles(**{name: values[idx] for name, values in vars(self).items()})


def battles_from_votes(votes: pd.DataFrame, index: dict[str, int]) -> Battles:
    """Votes (``clip_a``, ``clip_b``, ``preference``, ``timestamp`` as datetimes or epoch
    seconds) -> :class:`Battles`; BOTH_BAD, self-pairs and clips without embedding dropped."""
    need = {"clip_a", "clip_b", "preference", "timestamp"}
    if not need <= set(votes.columns):
        raise DataError(f"votes lack columns {sorted(need - set(votes.columns))}")
    bad = set(votes["preference"]) - set(PREFERENCES)
    if bad:
        raise DataError(f"unknown preference values {sorted(bad)}; use {', '.join(PREFERENCES)}")
    keep = votes[votes["preference"].isin(A_WIN_SHARE)]
    a = keep["clip_a"].astype(str).map(index)
    b = keep["clip_b"].astype(str).map(index)
    ok = (a.notna() & b.notna() & (a != b)).to_numpy()
    keep = keep[ok]
    stamps = keep["timestamp"]
    if pd.api.types.is_numeric_dtype(stamps):
        seconds = stamps.to_numpy(np.float64)
    else:
        seconds = pd.to_datetime(stamps, utc=True).astype("int64").to_numpy() / 1e9
    instr = keep.get("is_instrumental", pd.Series(False, index=keep.index))
    return Battles(
        a=a[ok].to_numpy(np.int64),
        b=b[ok].to_numpy(np.int64),
        y=keep["preference"].map(A_WIN_SHARE).to_numpy(np.float32),
        timestamp=np.asarray(seconds, dtype=np.float64),
        is_instrumental=instr.fillna(False).astype(bool).to_numpy(),
    )


def time_split(battles: Battles, holdout_fraction: float = 0.2) -> tuple[Battles, Battles]:
    """``(earlier, later)``: the latest ``holdout_fraction`` of battles held out (never at
    random), so evaluation asks what a refit does on votes it could not have seen."""
    if not 0.0 < holdout_fraction < 1.0:
        raise DataError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    order = np.argsort(battles.timestamp, kind="stable")
    cut = len(order) - round(len(order) * holdout_fraction)
    return battles.take(order[:cut]), battles.take(order[cut:])
