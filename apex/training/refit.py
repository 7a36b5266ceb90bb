"""Refit: build a challenger, compare it with the champion on the same held-out data, gate, version.

The flow of :func:`run_refit`:

1. Engagement arrays (with the target transform fitted on their ``train`` split) and votes as a
   table; votes become battles and are split **by time**: the latest ``holdout_fraction`` are held
   out, the rest train the challenger's Bradley-Terry loss.
2. Train the challenger (:func:`apex.training.loop.train`, ApexHeads, ``pref_weight`` > 0).
3. Evaluate the challenger and the model actually serving (default: the registry's champion) on
   the same held-out songs (``test`` split, else ``val``) and the same held-out battles, none of
   which either model was trained on.
4. :func:`gate` promotes only if no gated metric (held-out pairwise accuracy, engagement and
   aesthetics Spearman) is worse than the serving model's by more than its tolerance — the first
   refit too: there is no free first promotion.
5. The challenger is saved in its own version directory with ``metrics.json`` and a model card
   (``README.md``) whatever the decision; ``CHAMPION`` is repointed atomically on promotion.

Nothing here reads the vote store: the caller hands votes over as a DataFrame (``annotation``
owns the job that reads the store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from apex.evaluation.metrics import (
    evaluate_model,
    spearman_noise,
)
from apex.files import sha256_text
from apex.tasks import TASK_OUTPUTS
from apex.training.battles import Battles, battles_from_votes, time_split
from apex.training.config import GateConfig, TrainConfig
from apex.training.data import EngagementData, TargetTransform
from apex.training.gate import Decision, gate
from apex.training.loop import TrainResult, train
from apex.training.registry import ModelRegistry
from apex.training.saving import model_metadata, push_version, save_trained, write_card

#: Share of the training votes (the latest) that early stopping watches.
EARLY_STOP_FRACTION = 0.15


# ---------------------------------------------------------------------------- the refit
@dataclass
class RefitConfig:
    """Refit settings: the challenger's training config, the gate, the held-out vote fraction.

    ``train`` is taken as given; :func:`apex.training.config.scaled_train_config` sizes one to
    the data (the app's refit job does).
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(pref_weight=1.0, progress=False))
    gate: GateConfig = field(default_factory=GateConfig)
    holdout_fraction: float = 0.2
    model_repo: str | None = None
    #: ``kind`` of the saved model (``"demo"`` when trained on the synthetic demo corpus).
    kind: str = "custom"
    #: How to load the encoder the challenger was trained on (default: the data's encoder id).
    encoder_spec: str | None = None
    #: ``model_id`` of the saved versions (the version string tells them apart).
    model_id: str = "apex-arena-refit"


@dataclass
class RefitOutcome:
    """What a refit did: the version written, the gate's decision, the reports, the push note."""

    version: Path
    decision: Decision
    reports: dict[str, dict]
    push: str = ""
    note: str = ""


def load_champion(registry: ModelRegistry):
    """``(heads, info)`` of the current champion, or None when there is none."""
    path = registry.champion()
    if path is None:
        return None
    from apex.checkpoints import load_model

    return load_model(path)


def evaluate_serving(serving, data: EngagementData, held_out: Battles) -> tuple[dict | None, str]:
    """The serving model's report on the held-out songs and battles, or ``(None, why not)``.

    ``serving`` is ``(heads, info)``; it can only be compared on data embedded with the encoder
    it was trained on.
    """
    heads, info = serving
    if info.encoder_id != data.encoder_id:
        return None, (
            f"the serving model expects encoder {info.encoder_id!r} but the refit data was "
            f"embedded with {data.encoder_id!r}: they cannot be compared on the same data"
        )
    used = bool(info.metadata.get("preference_trained", False))
    task = info.metadata.get("train_config", {}).get("task")
    report = evaluate_model(
        heads, data, battles=held_out, use_preference=used, tasks=TASK_OUTPUTS.get(task)
    )
    return report, ""


def run_refit(
    data: EngagementData,
    transform: TargetTransform,
    votes: pd.DataFrame,
    registry: ModelRegistry,
    config: RefitConfig | None = None,
    *,
    serving=None,
) -> RefitOutcome:
    """Train a challenger, evaluate it and the serving model on the same held-out data, gate, save.

    Args:
        serving: ``(heads, info)`` of the model actually serving (default: the registry's
            champion). Held-out votes are the latest ``holdout_fraction`` by time, minus any vote
            the serving model was trained on (its metadata's ``votes_trained_until``), so neither
            model has seen them; held-out songs are the ``test`` split (else ``val``).

    Raises whatever training raises; callers (the CLI, the app's worker) keep the champion
    serving in that case because ``CHAMPION`` is only touched after a successful gate.
    """
    config = config or RefitConfig()
    serving = serving if serving is not None else load_champion(registry)
    battles = battles_from_votes(votes, data.index_of())
    seen_until = _trained_until(serving)
    fit_battles, held_out = _split_votes(battles, config.holdout_fraction, seen_until)
    result = train_with_votes(data, config.train, fit_battles)
    reports = {
        "challenger": evaluate_model(
            result.model, data, battles=held_out, use_preference=True, tasks=config.train.tasks
        )
    }
    why_not, noise = "no serving model was given and the registry has no champion", None
    if serving is not None:
        report, why_not = evaluate_serving(serving, data, held_out)
        if report is not None:
            reports["serving"] = report
            noise = spearman_noise(result.model, serving[0], data)
    decision = gate(reports["challenger"], reports.get("serving"), config.gate, noise)
    if "serving" not in reports:
        decision.reasons.append(why_not)
    version = registry.new_version()
    serving_version = serving[1].version if serving is not None else None
    metadata = model_metadata(
        result,
        data,
        transform,
        fingerprints={"votes": _votes_fingerprint(votes)},
        model_id=config.model_id,
        version=version.name,
        kind=config.kind,
        encoder_spec=config.encoder_spec or data.encoder_id,
        metrics=reports["challenger"],
        gate={
            "promote": decision.promote,
            "reasons": decision.reasons,
            "challenger": decision.challenger,
            "serving": decision.champion,
            "serving_version": serving_version,
            "spearman_noise": noise,
        },
        battles={"train": len(fit_battles), "held_out": len(held_out)},
        votes_trained_until=float(fit_battles.timestamp.max()) if len(fit_battles) else None,
    )
    save_trained(result, version, metadata)
    write_card(
        version,
        title=f"APEX Arena refit {version.name}",
        metrics={**reports, "gate": metadata["gate"]},
        decision=decision,
    )
    push = ""
    if decision.promote:
        registry.promote(version)
        push = push_version(version, config.model_repo)
    return RefitOutcome(version, decision, reports, push)


def _trained_until(serving) -> float | None:
    if serving is None:
        return None
    value = serving[1].metadata.get("votes_trained_until")
    return float(value) if value is not None else None


def train_with_votes(data: EngagementData, config: TrainConfig, battles: Battles) -> TrainResult:
    """Train with the latest :data:`EARLY_STOP_FRACTION` of ``battles`` (by time) kept out for
    early stopping, so the preference loss is watched without touching the held-out votes."""
    if config.pref_weight <= 0 or len(battles) < 10:
        return train(data, config, battles=battles)
    fit, watch = time_split(battles, EARLY_STOP_FRACTION)
    return train(data, config, battles=fit, val_battles=watch)


def _split_votes(
    battles: Battles, fraction: float, seen_until: float | None = None
) -> tuple[Battles, Battles]:
    """(training battles, held-out battles): a time split, then held-out votes the serving model
    trained on (at or before ``seen_until``) are dropped from the held-out set."""
    if len(battles) < 2:
        return battles, battles.take(np.arange(0))
    fit, held = time_split(battles, fraction)
    if seen_until is not None:
        held = held.take(np.flatnonzero(held.timestamp > seen_until))
    return fit, held


def _votes_fingerprint(votes: pd.DataFrame) -> str:
    cols = [c for c in ("battle_uuid", "clip_a", "clip_b", "preference") if c in votes]
    text = votes[cols].astype(str).to_csv(index=False) if cols else ""
    return sha256_text(text)
