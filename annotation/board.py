"""The boards: which votes a board counts (:func:`select_votes`, the one selection), one
leaderboard view as JSON (:func:`board_data`), and the consensus board the ``contrarian`` flag
compares voters with (:class:`Consensus`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from annotation.ratings import fit_bradley_terry
from annotation.refreshing import StoreFit
from annotation.store import SOURCES
from apex.tasks import A_WIN_SHARE, DECISIVE

BOARD_NAMES: tuple[str, ...] = ("all", "instrumental", "vocal")


def flagged(votes: pd.DataFrame) -> pd.Series:
    """True for each vote with vote-quality flags (none without a ``flags`` column)."""
    return votes.get("flags", pd.Series("", index=votes.index)).fillna("").astype(str) != ""


def select_votes(
    votes: pd.DataFrame,
    *,
    sources: Iterable[str] | None = None,
    include_imported: bool = False,
    board: str = "all",
    include_flagged: bool = False,
    signed_in_only: bool = False,
) -> pd.DataFrame:
    """The votes (:meth:`VoteStore.votes_frame` rows) a board or a refit counts: from ``sources``
    (default live and simulated, plus imported with ``include_imported``), of the ``board``
    (:data:`BOARD_NAMES`: needs ``is_instrumental`` unless ``all``). ValueError for an unknown
    source or board, or a column the selection needs missing.
    """
    if "source" not in votes.columns:
        raise ValueError("votes need a source column (live/simulated/imported)")
    if sources is None:
        sources = SOURCES if include_imported else tuple(s for s in SOURCES if s != "imported")
    sources = tuple(sources)
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown vote sources {sorted(unknown)}; use {', '.join(SOURCES)}")
    if board not in BOARD_NAMES:
        raise ValueError(f"board must be one of {', '.join(BOARD_NAMES)}; got {board!r}")
    keep = votes["source"].isin(sources)
    if board != "all":
        if "is_instrumental" not in votes.columns:
            raise ValueError(f"the {board!r} board needs an is_instrumental column")
        instrumental = votes["is_instrumental"].astype(bool)
        keep &= instrumental if board == "instrumental" else ~instrumental
    if signed_in_only and len(votes):
        keep &= votes["signed_in"].astype(bool)
    if not include_flagged:
        keep &= ~flagged(votes)
    return votes[keep]


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """A ratings table (sorted best first) with a ``rank`` column in front (1 = best)."""
    table = table.copy()
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def board_data(
    store: Any,
    board: str = "all",
    include_imported: bool = False,
    include_flagged: bool = False,
    signed_in_only: bool = False,
    style_control: bool = False,
    apex_informed: bool = False,
) -> dict[str, Any]:
    """One leaderboard view as JSON (ValueError for an unknown board); the options are
    :func:`select_votes`'s and the fit: plain Bradley-Terry with ``C=1`` and posterior intervals,
    ``style_control`` (sandwich intervals) or ``apex_informed`` (then no style control).

    Returns the options, ``updated_at`` (UTC), ``votes`` (all stored), ``rated_votes`` (this
    board's, without BOTH_BAD), ``flagged_left_out``, ``rows`` (``rank``, ``system``, ``rating``,
    ``ci_low``, ``ci_high``, ``votes``, ``provisional``), ``top_flips`` (None on a style board
    led by another system than the plain fit), ``b_win_share`` (``share``, ``n`` of decisive
    votes won by clip B, or None), ``apex`` (``weight``, ``prior_votes``; informed only),
    ``agreement`` (or None), ``agreement_by_version`` (records), ``effects`` (style control
    only) and ``style_missing_votes``.
    """
    from annotation.agreement import agreement, agreement_by_version
    from annotation.informed import PROVISIONAL_VOTES, flips_to_change_top

    options = {"include_imported": include_imported, "signed_in_only": signed_in_only}
    scope = select_votes(store.votes_frame(), board=board, include_flagged=True, **options)
    votes = scope if include_flagged else scope[~flagged(scope)]
    effects, missing, apex = None, 0, None
    if apex_informed:
        table, apex, flips = _informed_board(votes)
    else:
        plain = ranked(fit_bradley_terry(votes, l2=1.0, interval="posterior"))
        table, effects, missing = _style_board(votes) if style_control else (plain, None, 0)
        # The flip count is the plain fit's: it speaks for a style board only with the same leader.
        same_top = len(table) > 1 and table.index[0] == plain.index[0]
        flips = flips_to_change_top(votes, l2=1.0) if same_top else None
    rows = [
        {
            "rank": int(r["rank"]),
            "system": str(system),
            **{k: round(float(r[k]), 1) for k in ("rating", "ci_low", "ci_high")},
            "votes": int(r["votes"]),
            "provisional": bool(r["votes"] < PROVISIONAL_VOTES),
        }
        for system, r in table.iterrows()
    ]
    agree, by_version = None, []
    if len(votes) and "apex_p_a" in votes:
        scored = votes[votes["apex_p_a"].notna()]
        agree = agreement(scored) if len(scored) else None
        if "apex_model_version" in votes:
            by_version = agreement_by_version(votes).to_dict("records")
    rated = int(votes["preference"].isin(list(A_WIN_SHARE)).sum())  # BOTH_BAD: kept, not rated
    return {
        "board": board,
        **options,
        "include_flagged": include_flagged,
        "style_control": style_control,
        "apex_informed": apex_informed,
        "updated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "votes": int(store.counts()["votes"]),
        "rated_votes": rated,
        "flagged_left_out": 0 if include_flagged else len(scope) - len(votes),
        "rows": rows,
        "agreement": agree,
        "effects": effects,
        "style_missing_votes": int(missing),
        "agreement_by_version": by_version,
        "top_flips": flips,
        "b_win_share": _b_win_share(votes),
        "apex": apex,
    }


def _b_win_share(votes: pd.DataFrame) -> dict[str, Any] | None:
    """How often clip B (shown and played second) won the decisive votes, or None."""
    decisive = votes["preference"].isin(DECISIVE)
    n = int(decisive.sum())
    if not n:
        return None
    return {"share": round(float((votes["preference"][decisive] == "B").mean()), 3), "n": n}


def _informed_board(votes: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float], int | None]:
    """The APEX-informed table (with ``rank``), APEX's weight, and the flip count."""
    from annotation.informed import fit_informed, flips_to_change_top

    has_apex = "apex_p_a" in votes.columns and votes["apex_p_a"].notna().any()
    prior = None if has_apex else pd.Series(dtype=float)  # no predictions: no prior
    fit = fit_informed(votes, prior)
    flips = flips_to_change_top(votes, l2=None, centre=fit.centre, precision=fit.precision)
    apex = {"weight": round(fit.weight, 2), "prior_votes": round(fit.prior_votes, 1)}
    return ranked(fit.ratings), apex if has_apex else None, flips


def _style_board(votes: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]], int]:
    """The style-controlled table (with ``rank``), its covariate effects and votes left out."""
    from annotation.style import fit_style_controlled

    fit = fit_style_controlled(votes, interval="sandwich")
    effects = [
        {
            "covariate": str(name),
            **{k: round(float(e[k]), 1) for k in ("per_sd", "ci_low", "ci_high")},
            "per_unit": round(float(e["per_unit"]), 2),
            "unit": str(e["unit"]),
            "win_rate_per_sd": round(float(e["win_rate_per_sd"]), 3),
        }
        for name, e in fit.effects.iterrows()
    ]
    return ranked(fit.ratings), effects, fit.missing_votes


def consensus_ratings(store: Any) -> dict[str, float] | None:
    """System -> Elo points of a plain fit (``C=1``) of our own unflagged votes, or None."""
    table = fit_bradley_terry(select_votes(store.votes_frame()), l2=1.0)
    return {str(k): float(v) for k, v in table["rating"].items()} or None


class Consensus(StoreFit):
    """The board the ``contrarian`` test compares voters with: :meth:`ratings` (``now``: Unix
    seconds) is :func:`consensus_ratings` as of the last fit, or None."""

    def __init__(self, store: Any, *, refresh_s: float = 60.0, settings: Any = None) -> None:
        super().__init__(store, consensus_ratings, refresh_s=refresh_s, settings=settings)

    ratings = StoreFit.get
