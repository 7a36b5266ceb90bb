"""Refit: build a challenger, compare it with the champion on the same held-out data, gate, version.

The flow of :func:`run_refit`:

1. Engagement arrays (with the target transform fitted on their ``train`` split) and votes as a
   table; votes become battles and are split **by time**: the latest ``holdout_fraction`` are held
   out, the rest train the challenger's Bradley-Terry loss.
2. Train the challenger (:func:`apex.training.loop.train`, ApexHeads, ``pref_weight`` > 0).
3. Evaluate challenger and champion on the same held-out songs (``test`` split, else ``val``)
   and the same held-out battles.
4. :func:`gate` promotes only if neither held-out pairwise accuracy nor engagement Spearman is
   worse than the champion's by more than its tolerance.
5. The challenger is saved in its own version directory with ``metrics.json`` and a model card
   (``README.md``) whatever the decision; ``CHAMPION`` is repointed atomically on promotion.

Nothing here reads the vote store: the caller hands votes over as a DataFrame (``annotation``
owns the job that reads the store).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from apex.tasks import ENGAGEMENT, TASK_OUTPUTS
from apex.training.config import GateConfig, TrainConfig
from apex.training.data import (
    Battles,
    EngagementData,
    TargetTransform,
    battles_from_votes,
    time_split,
)
from apex.training.evaluate import engagement_spearman, evaluate_model, format_table
from apex.training.loop import TrainResult, train
from apex.training.registry import CHAMPION_FILE, ModelRegistry  # noqa: F401 (re-exported)

#: Share of the training votes (the latest) that early stopping watches.
EARLY_STOP_FRACTION = 0.15


@dataclass
class Decision:
    """The gate's verdict and the reasons, in words and numbers."""

    promote: bool
    reasons: list[str]
    challenger: dict[str, float]
    champion: dict[str, float] | None


def gate(challenger: dict, champion: dict | None, config: GateConfig = GateConfig()) -> Decision:
    """Decide from two evaluation reports (see :func:`apex.training.evaluate.evaluate_model`).

    NaN metrics (e.g. no held-out battles) count as failures for the challenger, never as passes.
    """
    ch = _key_metrics(challenger)
    if champion is None:
        return Decision(True, ["no champion yet: the first model is promoted"], ch, None)
    cp = _key_metrics(champion)
    reasons, ok = [], True
    if ch["battles"] < config.min_battles:
        ok = False
        reasons.append(
            f"only {ch['battles']} held-out decisive battles (< {config.min_battles}); "
            "collect more votes before replacing the champion"
        )
    for key, tol in (
        ("accuracy", config.accuracy_tolerance),
        ("spearman", config.spearman_tolerance),
    ):
        new, old = ch[key], cp[key]
        if not np.isfinite(new):
            ok = False
            reasons.append(f"challenger {key} is undefined on the held-out data")
        elif np.isfinite(old) and new < old - tol:
            ok = False
            reasons.append(
                f"{key} {new:.3f} is worse than the champion's {old:.3f} by more than {tol}"
            )
        else:
            reasons.append(f"{key} {new:.3f} vs champion {old:.3f} (tolerance {tol}): ok")
    return Decision(ok, reasons, ch, cp)


def _key_metrics(report: dict) -> dict[str, float]:
    pair = report.get("pairwise", {})
    return {
        "accuracy": float(pair.get("accuracy", float("nan"))),
        "auc": float(pair.get("auc", float("nan"))),
        "battles": int(pair.get("n", 0)),
        "spearman": engagement_spearman(report),
    }


# ---------------------------------------------------------------------------- saving
def model_metadata(
    result: TrainResult, data: EngagementData, transform: TargetTransform, **extra
) -> dict:
    """Metadata stored with trained heads: config, target statistics, fingerprints, metrics."""
    train_songs = data.songs_in("train")
    reference = {}
    for i, name in enumerate(ENGAGEMENT):
        col = data.targets[train_songs, i]
        col = np.sort(col[~np.isnan(col)])
        if len(col):  # <= 1001 quantiles keep metadata small at any corpus size
            reference[name] = np.quantile(col, np.linspace(0, 1, min(len(col), 1001))).tolist()
    return {
        "encoder_id": data.encoder_id,
        "train_config": asdict(result.config),
        "target_transform": transform.to_dict(),
        "reference_distribution": reference,
        "data_fingerprints": {"engagement": data.fingerprint, **extra.pop("fingerprints", {})},
        "best_epoch": result.best_epoch,
        "best_val": result.best_val,
        "calibration": result.calibration,
        "loss_weights": result.loss_weights,
        "preference_trained": result.config.pref_weight > 0,
        **extra,
    }


def save_trained(result: TrainResult, directory: Path, metadata: dict) -> Path:
    """Save trained heads in ``directory``.

    ApexHeads go through :func:`apex.checkpoints.save_model`; reference heads become a reference
    ``.pt`` (``model_state``, ``task``, ``shared``, ``mode``, ``epoch``, ``val_loss``) plus
    ``metadata.json``, so :func:`apex.checkpoints.load_model` reads them back.
    """
    directory = Path(directory)
    if result.config.family == "apex":
        from apex.checkpoints import save_model

        return save_model(result.model, directory, metadata=metadata)
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    torch.save(
        {
            "model_state": result.model.state_dict(),
            "task": cfg.task,
            "shared": cfg.shared,
            "mode": cfg.mode,
            "loss": cfg.loss,
            "epoch": result.best_epoch,
            "val_loss": result.best_val,
        },
        directory / "best_model.pt",
    )
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2, default=float))
    return directory


def write_card(directory: Path, *, title: str, metrics: dict, decision: Decision | None) -> None:
    """``metrics.json`` and a model card ``README.md`` (what, on what data, how well, gate)."""
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    lines = [
        f"# {title}",
        "",
        "APEX Arena heads (MERT-style embeddings -> 7 scores + a preference logit), refit on",
        "engagement data and arena votes. Scores: engagement 0-100, aesthetics 1-5.",
        "",
        "## Held-out evaluation (Spearman per score, battle metrics)",
        "",
        "```",
        format_table(
            {k: v for k, v in metrics.items() if isinstance(v, dict) and "regression" in v}
        ),
        "```",
    ]
    if decision is not None:
        verdict = "PROMOTED" if decision.promote else "NOT promoted"
        lines += ["", f"## Gate: {verdict}", "", *(f"- {r}" for r in decision.reasons)]
    (directory / "README.md").write_text("\n".join(lines) + "\n")


def push_version(directory: Path, repo_id: str | None) -> str:
    """Upload ``directory`` to the Hub model repo ``repo_id``; returns what happened, in words.

    Offline or without credentials the push is skipped with a clear message (never raises):
    the local version stays the source of truth.
    """
    if not repo_id:
        return "push skipped: no model repo configured (APEX_MODEL_REPO)"
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.upload_folder(
            folder_path=str(directory), repo_id=repo_id, commit_message=directory.name
        )
    except Exception as err:  # offline, no token, no permission: report, keep the local copy
        return (
            f"push to {repo_id} failed ({type(err).__name__}: {err}); the version is kept locally"
        )
    return f"pushed {directory.name} to {repo_id}"


# ---------------------------------------------------------------------------- the refit
@dataclass
class RefitConfig:
    """Refit settings: the challenger's training config, the gate, the held-out vote fraction."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(pref_weight=1.0, progress=False))
    gate: GateConfig = field(default_factory=GateConfig)
    holdout_fraction: float = 0.2
    model_repo: str | None = None


@dataclass
class RefitOutcome:
    """What a refit did: the version written, the gate's decision, the reports, the push note."""

    version: Path
    decision: Decision
    reports: dict[str, dict]
    push: str = ""


def load_champion(registry: ModelRegistry):
    """``(heads, info)`` of the current champion, or None when there is none."""
    path = registry.champion()
    if path is None:
        return None
    from apex.checkpoints import load_model

    return load_model(path)


def run_refit(
    data: EngagementData,
    transform: TargetTransform,
    votes: pd.DataFrame,
    registry: ModelRegistry,
    config: RefitConfig | None = None,
) -> RefitOutcome:
    """Train a challenger, evaluate it and the champion on the same held-out data, gate, save.

    Raises whatever training raises; callers (the CLI, the app's worker) keep the champion
    serving in that case because ``CHAMPION`` is only touched after a successful gate.
    """
    config = config or RefitConfig()
    battles = battles_from_votes(votes, data.index_of())
    fit_battles, held_out = _split_votes(battles, config.holdout_fraction)
    result = train_with_votes(data, config.train, fit_battles)
    reports = {
        "challenger": evaluate_model(
            result.model, data, battles=held_out, use_preference=True, tasks=config.train.tasks
        )
    }
    champion = load_champion(registry)
    if champion is not None:
        heads, info = champion
        if info.encoder_id != data.encoder_id:
            raise ValueError(
                f"champion expects encoder {info.encoder_id!r} but the data was embedded with "
                f"{data.encoder_id!r}; re-embed the data or start a new registry"
            )
        used = bool(info.metadata.get("preference_trained", False))
        task = info.metadata.get("train_config", {}).get("task")
        reports["champion"] = evaluate_model(
            heads, data, battles=held_out, use_preference=used, tasks=TASK_OUTPUTS.get(task)
        )
    decision = gate(reports["challenger"], reports.get("champion"), config.gate)
    version = registry.new_version()
    metadata = model_metadata(
        result,
        data,
        transform,
        fingerprints={"votes": _votes_fingerprint(votes)},
        version=version.name,
        kind="custom",
        metrics=reports["challenger"],
        gate={"promote": decision.promote, "reasons": decision.reasons},
        battles={"train": len(fit_battles), "held_out": len(held_out)},
    )
    save_trained(result, version, metadata)
    write_card(
        version, title=f"APEX Arena refit {version.name}", metrics=reports, decision=decision
    )
    push = ""
    if decision.promote:
        registry.promote(version)
        push = push_version(version, config.model_repo)
    return RefitOutcome(version, decision, reports, push)


def train_with_votes(data: EngagementData, config: TrainConfig, battles: Battles) -> TrainResult:
    """Train with the latest :data:`EARLY_STOP_FRACTION` of ``battles`` (by time) kept out for
    early stopping, so the preference loss is watched without touching the held-out votes."""
    if config.pref_weight <= 0 or len(battles) < 10:
        return train(data, config, battles=battles)
    fit, watch = time_split(battles, EARLY_STOP_FRACTION)
    return train(data, config, battles=fit, val_battles=watch)


def _split_votes(battles: Battles, fraction: float) -> tuple[Battles, Battles]:
    if len(battles) < 2:
        return battles, battles.take(np.arange(0))
    return time_split(battles, fraction)


def _votes_fingerprint(votes: pd.DataFrame) -> str:
    import hashlib

    cols = [c for c in ("battle_uuid", "clip_a", "clip_b", "preference") if c in votes]
    text = votes[cols].astype(str).to_csv(index=False) if cols else ""
    return hashlib.sha256(text.encode()).hexdigest()
