"""Refit: train a challenger, evaluate it and the serving model on the same held-out votes (the
latest), gate; the version is saved whatever the decision, ``CHAMPION`` moves only on promotion."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from apex.checkpoints import load_model
from apex.evaluation.metrics import _held_out, evaluate_model, spearman_noise
from apex.files import sha256_text
from apex.heads import ReferenceHeads
from apex.tasks import TASK_OUTPUTS
from apex.training.battles import Battles, battles_from_votes, time_split
from apex.training.config import GateConfig, TrainConfig
from apex.training.data import EngagementData, TargetTransform
from apex.training.gate import gate
from apex.training.loop import TrainResult, train
from apex.training.registry import ModelRegistry, push_version
from apex.training.request import RefitOutcome
from apex.training.saving import model_metadata, save_trained, write_card
from apex.training.warm import family_of, save_reference_layout, score_drift, warm_start

#: Learning-rate factor of a warm start that fine-tunes the whole model (an anchored one trains
#: its fresh preference output at the full rate).
WARM_LR_FACTOR = 0.1
#: Share of the training votes (the latest) that early stopping watches.
EARLY_STOP_FRACTION = 0.15


@dataclass
class RefitConfig:
    """Refit settings; ``train``'s family/task follow a warm start's heads. ``warm_start`` False
    trains from random weights (a deliberately naive challenger)."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(pref_weight=1.0, progress=False))
    gate: GateConfig = field(default_factory=GateConfig)
    holdout_fraction: float = 0.2
    model_repo: str | None = None
    #: ``kind`` of the saved model (``"demo"`` when trained on the synthetic demo corpus).
    kind: str = "custom"
    warm_start: bool = True


def load_champion(registry: ModelRegistry):
    """``(heads, info)`` of the current champion, or None when there is none."""
    path = registry.champion()
    return load_model(path) if path is not None else None


def evaluate_serving(serving, data: EngagementData, held_out: Battles) -> tuple[dict | None, str]:
    """``(report, "")`` of ``serving`` (``(heads, info)``) on the held-out songs and battles, or
    ``(None, why not)`` when the data were embedded by another encoder."""
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
    notes: list[str] | None = None,
) -> RefitOutcome:
    """Train a challenger, evaluate it and ``serving`` (``(heads, info)``; default: the
    registry's champion) on the same held-out data, gate, save. Without any ``train`` target the
    challenger trains anchored and the gate also bounds the scores' drift. ``notes`` (sentences
    for people) are kept in the outcome. ``CHAMPION`` is only touched after a successful gate."""
    config = config or RefitConfig()
    notes = list(notes or [])
    serving = serving if serving is not None else load_champion(registry)
    battles = battles_from_votes(votes, data.index_of())
    fit_battles, held_out = _split_votes(battles, config.holdout_fraction, serving)
    anchored = not np.isfinite(data.targets[data.songs_in("train")]).any()
    if anchored:
        notes.append(
            "no engagement data in the serving encoder's space: the seven scores stay anchored "
            "to the serving model (only the preference output learns from votes)"
        )
    result, started = _train_challenger(data, config, serving, fit_battles, anchored)
    reports = {
        "challenger": evaluate_model(
            result.model, data, battles=held_out, use_preference=True, tasks=result.config.tasks
        )
    }
    why_not, noise, drift = "no serving model was given and the registry has no champion", None, {}
    if serving is not None:
        report, why_not = evaluate_serving(serving, data, held_out)
        if report is not None:
            reports["serving"] = report
            noise = spearman_noise(result.model, serving[0], data)
            drift = score_drift(result.model, serving[0], data.song_x[_held_out(data)])
    bounded = drift if anchored else None
    decision = gate(reports["challenger"], reports.get("serving"), config.gate, noise, bounded)
    if "serving" not in reports:
        decision.reasons.append(why_not)
    version = registry.new_version()
    metadata = model_metadata(
        result,
        data,
        transform,
        fingerprints={"votes": _votes_fingerprint(votes)},
        model_id="apex-arena-refit",  # the version tells refits apart
        version=version.name,
        kind=config.kind,
        encoder_spec=data.encoder_id,
        metrics=reports["challenger"],
        gate={
            "promote": decision.promote,
            "reasons": decision.reasons,
            "challenger": decision.challenger,
            "serving": decision.champion,
            "serving_version": serving[1].version if serving is not None else None,
            "spearman_noise": noise,
            "drift": drift,
            "anchored": anchored,
        },
        warm_start=started,
        battles={"train": len(fit_battles), "held_out": len(held_out)},
        votes_trained_until=float(fit_battles.timestamp.max()) if len(fit_battles) else None,
    )
    if isinstance(result.model, ReferenceHeads):
        save_reference_layout(result.model, version, metadata)
    else:
        save_trained(result, version, metadata)
    title = f"APEX Arena refit {version.name}"
    write_card(
        version, title=title, metrics={**reports, "gate": metadata["gate"]}, decision=decision
    )
    push = ""
    if decision.promote:
        registry.promote(version)
        push = push_version(version, config.model_repo)
    return RefitOutcome(version, decision, reports, push, notes, drift, started)


def _train_challenger(
    data: EngagementData, config: RefitConfig, serving, battles: Battles, anchored: bool
) -> tuple[TrainResult, str]:
    """The challenger, warm-started from ``serving`` when it can be, and where it started."""
    model, started = (
        warm_start(serving, data.encoder_id)
        if config.warm_start
        else (None, "random init: warm start turned off")
    )
    family = family_of(model) if model is not None else {}
    if model is not None and not anchored:  # fine-tuning trained weights, not learning anew
        family["lr"] = config.train.lr * WARM_LR_FACTOR
    train_cfg = replace(config.train, **family, anchor=anchored)
    return train_with_votes(data, train_cfg, battles, model=model), started


def train_with_votes(
    data: EngagementData, config: TrainConfig, battles: Battles | None, *, model=None
) -> TrainResult:
    """Train (from ``model``); the latest :data:`EARLY_STOP_FRACTION` of ``battles`` early-stops."""
    if battles is None or config.pref_weight <= 0 or len(battles) < 10:
        return train(data, config, battles=battles, model=model)
    fit, watch = time_split(battles, EARLY_STOP_FRACTION)
    return train(data, config, battles=fit, val_battles=watch, model=model)


def _split_votes(battles: Battles, fraction: float, serving) -> tuple[Battles, Battles]:
    """A time split without the held-out votes ``serving`` trained on (``votes_trained_until``)."""
    if len(battles) < 2:
        return battles, battles.take(np.arange(0))
    fit, held = time_split(battles, fraction)
    seen_until = serving[1].metadata.get("votes_trained_until") if serving is not None else None
    if seen_until is not None:
        held = held.take(np.flatnonzero(held.timestamp > float(seen_until)))
    return fit, held


def _votes_fingerprint(votes: pd.DataFrame) -> str:
    cols = [c for c in ("battle_uuid", "clip_a", "clip_b", "preference") if c in votes]
    return sha256_text(votes[cols].astype(str).to_csv(index=False))
