"""What this deployment would lose if it restarted now: the About tab's line and start-up warnings.

A Space's disk is wiped at every restart, rebuild and wake (the README's state table), so only
what the Hub holds comes back: votes pushed to ``APEX_VOTES_REPO`` and the champion pushed to
``APEX_MODEL_REPO``, both needing a write token (``HF_TOKEN``). Self-hosted, the data directory
stays. :func:`config_warnings` says what the configuration alone loses (logged at start-up);
:func:`state_line` adds what is pending right now (votes not yet pushed, a champion only local).
Nothing here imports gradio.
"""

from __future__ import annotations

import os
from typing import Any

from apex.settings import Settings


def on_space() -> bool:
    """True on a Hugging Face Space (the platform sets ``SPACE_ID``)."""
    return bool(os.environ.get("SPACE_ID"))


def has_token() -> bool:
    """True when ``huggingface_hub`` has a token to push with (``HF_TOKEN`` or a stored login)."""
    from huggingface_hub import get_token

    return bool(get_token())


def config_warnings(settings: Settings) -> list[str]:
    """Sentences for what this configuration loses at every restart of a Space ([] elsewhere)."""
    if not on_space():
        return []
    token = has_token()
    out = []
    if settings.votes_repo is None:
        out.append(
            "APEX_VOTES_REPO is not set: every vote is lost at the next restart (a Space's disk "
            "is wiped at every restart, rebuild and wake). Set it to a dataset repo id."
        )
    elif not token:
        out.append(
            f"HF_TOKEN is not set: votes cannot be pushed to {settings.votes_repo} and are lost "
            "at the next restart. Add a write token as the Space secret HF_TOKEN."
        )
    if settings.model_repo is None:
        out.append(
            "APEX_MODEL_REPO is not set: a promoted model is lost at the next restart and the "
            "published model serves again. Set it to a model repo id."
        )
    elif not token:
        out.append(
            f"HF_TOKEN is not set: promoted models cannot be pushed to {settings.model_repo} and "
            "are lost at the next restart. Add a write token as the Space secret HF_TOKEN."
        )
    return out


def _champion_at_risk(settings: Settings) -> str | None:
    """The local champion's name when the model repo does not hold it, else None."""
    from apex.training.model_repo import hub_record
    from apex.training.registry import registry_for

    champion = registry_for(settings).champion()
    if champion is None or hub_record(champion) is not None:
        return None
    return champion.name


def state_line(settings: Settings, votes: int | None, sync_status: Any | None) -> str:
    """One line: what a restart now would lose, and what only a crash would.

    Args:
        settings: the app's settings.
        votes: votes in the store (None while it warms up).
        sync_status: :meth:`annotation.sync.VoteSync.status` (``pending_votes``), or None.
    """
    if not on_space():
        return (
            f"Self-hosted: a restart loses nothing (votes, models and caches stay in "
            f"`{settings.data_dir}`)."
        )
    lost = []
    pending = getattr(sync_status, "pending_votes", None)
    if settings.votes_repo is None or not has_token():
        lost.append(f"all {votes if votes is not None else 'the'} votes")
    champion = _champion_at_risk(settings)
    if champion is not None:
        lost.append(f"the promoted model `{champion}` (not in a model repo)")
    if settings.cache_root is None:
        rebuilt = "caches are rebuilt at start (set APEX_CACHE_DIR to a bucket to keep them)"
    else:
        rebuilt = f"caches stay in `{settings.cache_root}`"
    head = "A restart now would lose " + (", ".join(lost) if lost else "nothing")
    if not any(item.endswith("votes") for item in lost) and pending:
        head += (
            f"; {pending} votes not yet on the Hub are pushed by a graceful restart and "
            "lost only in a crash"
        )
    return f"{head}; {rebuilt}."
