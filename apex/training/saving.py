"""Saving a trained version: metadata, weights, ``metrics.json`` and model card."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from apex.checkpoints import save_model
from apex.evaluation.metrics import format_table
from apex.files import atomic_path, write_text_atomic
from apex.tasks import ENGAGEMENT
from apex.training.data import EngagementData, TargetTransform
from apex.training.gate import Decision
from apex.training.loop import TrainResult


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
    """Save trained heads in ``directory`` so :func:`apex.checkpoints.load_model` reads them:
    ApexHeads by :func:`~apex.checkpoints.save_model`, reference heads as a reference ``.pt``."""
    directory = Path(directory)
    if result.config.family == "apex":
        return save_model(result.model, directory, metadata=metadata)
    cfg = result.config
    with atomic_path(directory / "best_model.pt") as tmp:
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
            tmp,
        )
    write_text_atomic(directory / "metadata.json", json.dumps(metadata, indent=2, default=float))
    return directory


def write_card(directory: Path, *, title: str, metrics: dict, decision: Decision | None) -> None:
    """``metrics.json`` and a model card ``README.md`` (what, on what data, how well, gate)."""
    write_text_atomic(directory / "metrics.json", json.dumps(metrics, indent=2, default=float))
    reports = {k: v for k, v in metrics.items() if isinstance(v, dict) and "regression" in v}
    lines = [
        f"# {title}",
        "",
        "APEX Arena heads (MERT-style embeddings -> 7 scores + a preference logit), refit on",
        "engagement data and arena votes. Scores: engagement 0-100, aesthetics 1-5.",
        "",
        "## Held-out evaluation (Spearman per score, battle metrics)",
        "",
        "```",
        format_table(reports),
        "```",
    ]
    if decision is not None:
        verdict = "PROMOTED" if decision.promote else "NOT promoted"
        lines += ["", f"## Gate: {verdict}", "", *(f"- {r}" for r in decision.reasons)]
    write_text_atomic(directory / "README.md", "\n".join(lines) + "\n")
