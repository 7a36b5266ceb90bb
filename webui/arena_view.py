"""What the Arena tab shows and keeps per page, who is voting, and the clip links it serves
(:func:`served_folder`, the only folder gradio serves as static files). No gradio here."""

from __future__ import annotations

import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apex.files import atomic_path, sha256_text
from apex.tasks import AESTHETICS, ENGAGEMENT, PREFERENCES, SIDES
from webui import charts
from webui.uploads import remove_tree

#: Button label -> preference value, in the order of :data:`apex.tasks.PREFERENCES`.
VOTE_BUTTONS: dict[str, str] = dict(
    zip(("A is better", "B is better", "Tie", "Both bad"), PREFERENCES, strict=True)
)

CONSENT = (
    "**Before you vote:** your vote, how long you listened, and any feedback or ratings you give "
    "are stored and published in an open dataset for research. We never store your IP address or "
    "account: votes carry only a salted pseudonym. Clips are AI-generated; the systems are hidden "
    "until you vote."
)


def progress_markdown(credit: Mapping[str, float], need: float) -> str:
    """'Listened: A 5 / 5 s (done) · B 1 / 5 s' from the server's credit (side -> seconds) and
    the minimum listen per side (seconds)."""
    from annotation.rules import listen_status

    status = listen_status(credit, need)
    parts = []
    for side in SIDES:
        got = min(credit.get(side, 0.0), need) if need > 0 else credit.get(side, 0.0)
        mark = "" if status.missing.get(side, 0.0) > 0 else " (done)"
        parts.append(f"{side} {got:.0f} / {need:g} s{mark}")
    tail = (
        "voting is open." if status.can_vote else f"voting opens when both clips reach {need:g} s."
    )
    return f"**Listened:** {' · '.join(parts)} — {tail}"


def reveal_markdown(reveal: dict[str, Any]) -> str:
    """The reveal: systems, APEX scores side by side, APEX's pick and agreement."""
    pref = reveal["preference"]
    voted = next((label for label, p in VOTE_BUTTONS.items() if p == pref), pref)
    rows = [
        "| | A | B |",
        "|---|---|---|",
        f"| **System** | **{reveal['system_a']}** | **{reveal['system_b']}** |",
    ]
    for name in ENGAGEMENT + AESTHETICS:
        a, b = reveal["apex_a"].get(name), reveal["apex_b"].get(name)
        if a is None or b is None:
            continue
        digits = 0 if name in ENGAGEMENT else 2
        rows.append(f"| APEX {charts.pretty(name)} | {a:.{digits}f} | {b:.{digits}f} |")
    pick, prob = reveal.get("apex_pick"), reveal.get("apex_probability")
    if pick is None:
        verdict = reveal.get("apex_note") or "APEX made no prediction for this battle."
    else:
        judged = {True: "**APEX agreed with you.**", False: "**APEX disagreed with you.**"}.get(
            reveal.get("apex_agrees"), "(ties and 'both bad' are not counted as agreement)"
        )
        verdict = f"APEX preferred **{pick}** ({prob:.0%} confident). {judged}"
        if reveal.get("model_version"):
            verdict += f" Predicted by model `{reveal['model_version']}`."
    return "\n".join([f"### You voted: {voted}", "", *rows, "", verdict])


def collect_ratings(values: list[Any]) -> dict[str, dict[str, int]] | None:
    """Radio values (A's five aesthetics, then B's) -> ``{"A": {dim: 1-5}, ...}`` or None."""
    out: dict[str, dict[str, int]] = {}
    radios = [(side, dim) for side in SIDES for dim in AESTHETICS]
    for (side, dim), value in zip(radios, values, strict=True):
        if value not in (None, ""):
            out.setdefault(side, {})[dim] = int(value)
    return out or None


def fresh_listen_state(battle_id: str | None = None) -> dict[str, Any]:
    """Per-session listening bookkeeping: totals played and when each player started."""
    return {"battle_id": battle_id, "total": dict.fromkeys(SIDES, 0.0), "since": {}}


def advance(state: dict[str, Any], now: float) -> list[str]:
    """Add the time since the last update to every playing side; return the sides that moved."""
    for side, start in state["since"].items():
        state["total"][side] += max(0.0, now - start)
        state["since"][side] = now
    return list(state["since"])


def session_id(request: Any) -> str:
    """The browser session (one per page load) or ``gradio_client`` instance of a ``gr.Request``."""
    return (request.session_hash if request is not None else None) or "anonymous"


def client_ip(request: Any, trusted_proxies: int = 1) -> str | None:
    """The visitor's address as the outermost of ``APEX_TRUSTED_PROXIES`` proxies saw it (only
    ever hashed; :func:`annotation.identity.client_address`)."""
    from annotation.identity import client_address

    if request is None:
        return None
    forwarded = (request.headers or {}).get("x-forwarded-for")
    peer = request.client.host if request.client else None
    return client_address(forwarded, peer, trusted_proxies)


def account_id(profile: Any) -> str | None:
    """A signed-in visitor's stable account id (OpenID ``sub``; a renamed account stays one
    voter), or None when anonymous."""
    if not profile:
        return None
    return str(profile.get("sub") or "") or None


#: Served links are grouped in folders by issue time (this many seconds each), so old ones are
#: removed a folder at a time without a stat per file (a hard link's mtime is its source's).
SERVED_BUCKET_S = 600


def served_folder(settings: Any) -> Path:
    """Where the per-battle clip links live: under the system's temp folder (a URL shows nothing
    of the deployment's layout), one subfolder per data directory (two apps never remove each
    other's links)."""
    deployment = sha256_text(str(Path(settings.data_dir).resolve()))
    return Path(tempfile.gettempdir()) / "apex-arena-audio" / deployment[:16]


def served_copy(path: str | Path, folder: Path, *, keep_s: float = 3600.0) -> str:
    """A fresh link (or copy, across file systems) to the clip for one battle under a random name,
    never derived from the path nor reused (docs/DESIGN.md, hardening); returns its path. Links
    older than ``keep_s`` (the battle's lifetime) plus one bucket are removed here."""
    path = Path(path)
    bucket = int(time.time() // SERVED_BUCKET_S)
    target_dir = folder / str(bucket)
    target = target_dir / f"{secrets.token_urlsafe(16)}{path.suffix.lower()}"
    # Atomic (the player never sees half a file); no fsync: a lost link is re-issued, not data.
    with atomic_path(target, fsync=False) as partial:
        try:
            os.link(path, partial)
        except OSError:  # another file system (or no hard links there): copy instead
            shutil.copyfile(path, partial)
    oldest_kept = bucket - math.ceil(keep_s / SERVED_BUCKET_S) - 1
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) < oldest_kept:
            remove_tree(entry)  # another request may be removing it at the same time
    return str(target)
