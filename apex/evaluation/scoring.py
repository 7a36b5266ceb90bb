"""Score a Music Arena release with one model and run the arena protocol on its battles: what
``apex eval arena`` runs per ``--model``, so every model (refits included) gets the same report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from apex.audio import AudioError
from apex.evaluation.arena import evaluate_arena


def evaluate_scorer(
    scorer: Any, spec: str, release: Any, battles: pd.DataFrame, **protocol: Any
) -> dict[str, Any]:
    """One model's arena report: score the clips of ``release`` (an
    :class:`~apex.sources.music_arena.ArenaRelease`) with ``scorer`` (an
    :class:`apex.scorer.Scorer` named ``spec``: ``auto``, a path...), compare each battle's pair
    and run :func:`~apex.evaluation.arena.evaluate_arena` with ``protocol``. The report gains
    ``model`` (what was judged) and ``unscored_clips``, ``[(clip_id, reason)]`` (missing or
    unreadable clips)."""
    results, failed = {}, []
    for clip in release.clips().itertuples():
        if not clip.has_audio:
            failed.append((clip.clip_id, "audio file not on disk"))
            continue
        try:
            results[clip.clip_id] = scorer.score(release.root / clip.file_name)[0]
        except (AudioError, OSError) as exc:
            failed.append((clip.clip_id, f"{type(exc).__name__}: {exc}"))
    predictions = pd.DataFrame({cid: r.scores for cid, r in results.items()}).T
    p_compare = np.array(
        [
            scorer.compare(results[a], results[b]) if a in results and b in results else np.nan
            for a, b in zip(battles["clip_a"], battles["clip_b"], strict=True)
        ]
    )
    report = evaluate_arena(battles, predictions, p_compare=p_compare, **protocol)
    info = scorer.info()
    judged = ("model_id", "version", "encoder_id", "is_demo")
    return report | {
        "model": {"spec": spec, **{k: info.get(k) for k in judged}},
        "unscored_clips": failed,
    }


def strict_json(value: Any) -> Any:
    """``value`` with NaN/inf floats as None: strict JSON (``jq``, browsers)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return strict_json(value.item())
    return value
