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

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from apex.evaluation.metrics import (
    engagement_spearman,
    evaluate_model,
    format_table,
    spearman_noise,
)
from apex.tasks import AESTHETICS, ENGAGEMENT, TASK_OUTPUTS
from apex.training.config import GateConfig, TrainConfig
from apex.training.data import (
    Battles,
    EngagementData,
    TargetTransform,
    battles_from_votes,
    time_split,
)
from apex.training.loop import TrainResult, train
from apex.training.registry import CHAMPION_FILE, ModelRegistry  # noqa: F401 (re-exported)

#: Share of the training votes (the latest) that early stopping watches.
EARLY_STOP_FRACTION = 0.15


@dataclass
class Decision:
    """The gate's verdict and the reasons, in words and numbers.

    Attributes:
        challenger, champion: key held-out metrics (:func:`key_metrics`) of the challenger and of
            the model serving when the refit ran (None when none could be evaluated).
    """

    promote: bool
    reasons: list[str]
    challenger: dict[str, float]
    champion: dict[str, float] | None


#: Gated metrics: key -> (GateConfig tolerance attribute, label for people).
GATED: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy_tolerance", "held-out pairwise accuracy"),
    "spearman": ("spearman_tolerance", "engagement Spearman"),
    "aesthetics": ("spearman_tolerance", "aesthetics Spearman"),
}


def gate(
    challenger: dict,
    champion: dict | None,
    config: GateConfig = GateConfig(),
    noise: dict[str, float] | None = None,
) -> Decision:
    """Decide from two evaluation reports on the same held-out data (see
    :func:`apex.evaluation.metrics.evaluate_model`): the challenger's and the serving model's.

    Promotion needs at least ``config.min_battles`` held-out decisive battles and, on every gated
    metric the serving model has, a challenger not worse beyond its tolerance. There is no free
    first promotion: without a serving report (nothing to compare with) the challenger is refused.
    NaN challenger metrics count as failures, never as passes.

    ``noise`` (:func:`apex.evaluation.metrics.spearman_noise`): the paired-bootstrap standard
    deviation of the Spearman differences on these held-out songs. A Spearman metric's tolerance
    is the larger of its configured one and that noise, so a difference the held-out songs cannot
    resolve neither promotes nor refuses; pairwise accuracy keeps its configured tolerance.
    """
    noise = noise or {}
    ch = key_metrics(challenger)
    if champion is None:
        return Decision(
            False,
            ["no serving model could be evaluated on the same held-out data: nothing to compare"],
            ch,
            None,
        )
    cp = key_metrics(champion)
    reasons, ok = [], True
    if ch["battles"] < config.min_battles:
        ok = False
        reasons.append(
            f"only {ch['battles']} held-out decisive battles (< {config.min_battles}); "
            "collect more votes before replacing the serving model"
        )
    for key, (tol_name, label) in GATED.items():
        new, old, tol = ch[key], cp[key], getattr(config, tol_name)
        if key != "accuracy" and np.isfinite(noise.get(key, float("nan"))):
            tol = round(max(tol, noise[key]), 3)
        if not np.isfinite(old) and key == "aesthetics":
            continue  # the serving model predicts no aesthetics: nothing to hold it to
        if not np.isfinite(new):
            ok = False
            reasons.append(f"challenger {label} is undefined on the held-out data")
        elif np.isfinite(old) and new < old - tol:
            ok = False
            reasons.append(
                f"{label} {new:.3f} is worse than the serving model's {old:.3f} by more than {tol}"
            )
        else:
            reasons.append(f"{label} {new:.3f} vs serving {old:.3f} (tolerance {tol}): ok")
    return Decision(ok, reasons, ch, cp)


def key_metrics(report: dict) -> dict[str, float]:
    """The gated figures of one report: ``accuracy``, ``auc``, ``battles`` (held-out decisive
    battles), ``spearman`` (engagement mean) and ``aesthetics`` (mean Spearman of the five)."""
    pair = report.get("pairwise", {})
    reg = report.get("regression", {})
    aes = [reg[a]["spearman"] for a in AESTHETICS if a in reg]
    return {
        "accuracy": float(pair.get("accuracy", float("nan"))),
        "auc": float(pair.get("auc", float("nan"))),
        "battles": int(pair.get("n", 0)),
        "spearman": engagement_spearman(report),
        "aesthetics": float(np.mean(aes)) if aes else float("nan"),
    }


_key_metrics = key_metrics


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
    import hashlib

    cols = [c for c in ("battle_uuid", "clip_a", "clip_b", "preference") if c in votes]
    text = votes[cols].astype(str).to_csv(index=False) if cols else ""
    return hashlib.sha256(text.encode()).hexdigest()
