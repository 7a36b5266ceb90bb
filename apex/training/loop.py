"""The training loop: AdamW, cosine schedule, early stopping, seeded, CPU or GPU. Early stopping
watches a criterion independent of the learned loss weights: ``sum_t MSE_t / Var_t(train
targets)`` plus ``pref_weight`` times the validation Bradley-Terry loss."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from apex.tasks import SCORE_NAMES
from apex.training.battles import Battles
from apex.training.config import TrainConfig
from apex.training.data import EngagementData, known_targets
from apex.training.losses import (
    UncertaintyWeighting,
    bradley_terry_loss,
    combine,
    gaussian_nll,
    task_mse,
)

#: Parameter-name prefixes of the preference output (both head families); the only parameters
#: an anchored run (``TrainConfig.anchor``) trains.
PREFERENCE_PARAMS: tuple[str, ...] = ("branch_preference.", "preference_out.")


def anchor(model: nn.Module) -> None:
    """Freeze every parameter but the preference output's, and hold the frozen modules in eval
    mode (BatchNorm statistics and dropout as served): the seven scores cannot move."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(PREFERENCE_PARAMS))
    for name, module in model.named_modules():
        if not (name + ".").startswith(PREFERENCE_PARAMS):
            module.training = False


def forward(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``[B, L, D]``, or on pre-mixed ``[B, D]`` through ``predict_mixed``."""
    if x.dim() == 2 and hasattr(model, "predict_mixed"):
        return model.predict_mixed(x)
    return model(x)


class Stepper:
    """Optimiser, schedule and seeded batch plan of one run: **separate** (segment mode, or no
    battles) takes every training row once an epoch plus each step's share of the battles' clips;
    **shared** (song mode with battles) lets battle clips double as regression rows, topped up
    with uncovered training songs: ``2 P + N_uncovered`` rows an epoch, not ``2 P + N``."""

    def __init__(self, model, data, rows, config, battles, device) -> None:
        self.model, self.config, self.device, self.battles = model, config, device, battles
        self.shared = battles is not None and data.x is data.song_x
        if self.shared:  # rows are songs; non-train songs keep their embedding, lose their targets
            self.train_songs = np.unique(data.row_song[rows])
            targets = np.full_like(data.targets, np.nan)
            targets[self.train_songs] = data.targets[self.train_songs]
            self.x = torch.as_tensor(data.song_x).to(device)
            self.y = torch.as_tensor(targets).to(device)
        else:
            self.x = torch.as_tensor(data.x[rows]).to(device)
            self.y = torch.as_tensor(data.targets[data.row_song[rows]]).to(device)
        self.song_x = self.x if self.shared else torch.as_tensor(data.song_x).to(device)
        self.uncertainty = (
            UncertaintyWeighting(config.tasks).to(device) if config.loss == "uncertainty" else None
        )
        if config.anchor:
            anchor(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if self.uncertainty is not None:
            self.params += list(self.uncertainty.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=config.epochs)
        self.gen = torch.Generator().manual_seed(config.seed)

    def _plan(self) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """(regression rows of ``self.x``, battle positions) per step; shared: battles first, then
        the training songs no battle of this epoch covers."""
        size = self.config.batch_size
        if self.shared:
            pairs = torch.randperm(len(self.battles), generator=self.gen).numpy()
            covered = np.zeros(len(self.x), bool)
            covered[self.battles.a] = covered[self.battles.b] = True
            rest = self.train_songs[~covered[self.train_songs]]
            rows = torch.as_tensor(rest[torch.randperm(len(rest), generator=self.gen).numpy()])
            # as many steps as separate (the training songs in batches): the number of updates
            # does not grow with the number of votes
            steps = max(1, math.ceil(len(self.train_songs) / size))
            size = math.ceil(len(rows) / steps)
        else:
            rows = torch.randperm(len(self.x), generator=self.gen)
            steps = max(1, math.ceil(len(rows) / size))
            pairs = np.arange(0)
            if self.battles is not None:
                pairs = torch.randperm(len(self.battles), generator=self.gen).numpy()
        per = math.ceil(len(pairs) / steps)
        for i in range(steps):
            yield rows[i * size : (i + 1) * size], pairs[i * per : (i + 1) * per]

    def epoch(self) -> float:
        """One pass over the plan; returns the mean training loss."""
        self.model.train()
        if self.config.anchor:
            anchor(self.model)
        if self.config.hold_norm_stats:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        losses = [self._step(rows, pick) for rows, pick in self._plan()]
        self.sched.step()
        done = [v for v in losses if v is not None]
        return float(np.mean(done)) if done else float("nan")

    def _step(self, rows: torch.Tensor, pick: np.ndarray) -> float | None:
        cfg, dev = self.config, self.device
        rows = rows.to(dev)
        k = len(pick)
        if k:
            a = torch.as_tensor(self.battles.a[pick], device=dev)
            b = torch.as_tensor(self.battles.b[pick], device=dev)
        if self.shared and k:  # battle clips are regression rows too
            rows = torch.cat([rows, a, b])
        if len(rows) < 2:  # BatchNorm cannot train on one row
            return None
        xb, yb = self.x[rows], self.y[rows]
        if k and not self.shared:
            xb = torch.cat([xb, self.song_x[a], self.song_x[b]])
        with torch.autocast(dev.type, torch.bfloat16, enabled=cfg.precision == "bf16"):
            out = forward(self.model, xb)
        out = {key: value.float() for key, value in out.items()}
        head = {key: value[: len(rows)] for key, value in out.items()}
        parts = task_mse(head, yb, cfg.tasks)
        if not parts and not k:  # nothing known in this batch: no update
            return None
        loss = combine(parts, cfg.loss, self.uncertainty) if parts else torch.zeros((), device=dev)
        nll = gaussian_nll(head, yb, cfg.tasks)
        if nll is not None:
            loss = loss + nll
        if k:
            pref = out["preference"][len(out["preference"]) - 2 * k :]
            y = torch.as_tensor(self.battles.y[pick], device=dev)
            loss = loss + cfg.pref_weight * bradley_terry_loss(pref[:k], pref[k:], y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        return float(loss.detach())


@dataclass
class TrainResult:
    """What :func:`train` returns: the best model (eval mode, on CPU) and how it got there."""

    model: nn.Module
    config: TrainConfig
    best_epoch: int
    best_val: float
    history: list[dict[str, float]] = field(default_factory=list)
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)
    loss_weights: dict[str, float] = field(default_factory=dict)


def build_model(config: TrainConfig, num_layers: int, dim: int) -> nn.Module:
    """A fresh model of ``config.family`` for inputs ``[B, num_layers, dim]``."""
    from apex.heads import ApexHeads, HeadsConfig, ReferenceHeads

    if config.family == "reference":
        return ReferenceHeads(
            task=config.task,
            shared=config.shared,
            mode=config.mode,
            input_dim=dim,
            preference=config.pref_weight > 0,
        )
    hidden = [512, 256] if config.shared == 2 else [512, 384, 256]
    return ApexHeads(
        HeadsConfig(num_layers=num_layers, dim=dim, hidden=hidden, dropout=config.dropout)
    )


@torch.no_grad()
def predict(
    model: nn.Module, x: np.ndarray | torch.Tensor, *, batch: int = 8192, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """Outputs of ``model`` (eval mode) for ``x`` ``[N, L, D]`` or ``[N, D]``, as ``[N]`` arrays."""
    model.eval().to(device)
    x = torch.as_tensor(x)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x), batch):
        out = forward(model, x[start : start + batch].to(device, torch.float32))
        for key, value in out.items():
            parts.setdefault(key, []).append(value.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _validator(data, val_songs, train_songs, config, battles, device):
    """The fixed early-stopping criterion on validation songs and battles (see module doc)."""
    x, y, device = data.song_x[val_songs], data.targets[val_songs], str(device)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are untrained tasks
        var = np.nan_to_num(np.nanvar(data.targets[train_songs], axis=0), nan=1.0)
    var = {t: float(max(var[SCORE_NAMES.index(t)], 1e-6)) for t in config.tasks}
    use_battles = config.pref_weight > 0 and battles is not None and len(battles) > 0

    def criterion(model: nn.Module) -> dict[str, float]:
        out = predict(model, x, device=device)
        metrics: dict[str, float] = {}
        total = 0.0
        for task in config.tasks:
            col = y[:, SCORE_NAMES.index(task)]
            known = ~np.isnan(col)
            if known.any():
                mse = float(np.mean((out[task][known] - col[known]) ** 2))
                metrics[f"val_mse_{task}"] = mse
                total += mse / var[task]
        if use_battles:
            ua = predict(model, data.song_x[battles.a], device=device)["preference"]
            ub = predict(model, data.song_x[battles.b], device=device)["preference"]
            bt = bradley_terry_loss(
                torch.as_tensor(ua), torch.as_tensor(ub), torch.as_tensor(battles.y)
            )
            metrics["val_bt"] = float(bt)
            total += config.pref_weight * float(bt)
        metrics["val_criterion"] = total
        return metrics

    return criterion


def train(
    data: EngagementData,
    config: TrainConfig,
    *,
    battles: Battles | None = None,
    val_battles: Battles | None = None,
    model: nn.Module | None = None,
) -> TrainResult:
    """Train heads on ``data``'s ``train`` split (``val``: early stopping and calibration);
    ``battles`` train the preference when ``config.pref_weight > 0``, ``val_battles`` join the
    early-stopping criterion, ``model`` is a warm start (its feature statistics are kept)."""
    torch.manual_seed(config.seed)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if config.device == "auto" else config.device)
    train_songs, val_songs = data.songs_in("train"), data.songs_in("val")
    if len(train_songs) == 0:
        raise ValueError("no songs in the 'train' split; check the shards' split column")
    if len(val_songs) == 0:  # validate on 10 % of train (seeded)
        shuffled = np.random.default_rng(config.seed).permutation(train_songs)
        n_val = max(1, len(train_songs) // 10)
        val_songs, train_songs = np.sort(shuffled[:n_val]), np.sort(shuffled[n_val:])
    rows = np.flatnonzero(np.isin(data.row_song, train_songs))
    if model is None:  # a warm start keeps its feature statistics
        layers = 1 if data.x.ndim == 2 else data.x.shape[1]
        model = build_model(config, layers, data.x.shape[-1])
        if hasattr(model, "set_feature_stats"):
            flat = torch.as_tensor(data.x[rows]).float().reshape(-1, data.x.shape[-1])
            model.set_feature_stats(flat.mean(0), flat.std(0))
    model.to(device)
    use_pref = config.pref_weight > 0 and battles is not None and len(battles) > 0
    step = Stepper(model, data, rows, config, battles if use_pref else None, device)
    validate = _validator(data, val_songs, train_songs, config, val_battles, device)

    best_val, best_epoch, best_state, history, stale = math.inf, 0, None, [], 0
    epochs = tqdm(
        range(1, config.epochs + 1), desc="train", unit="epoch", disable=not config.progress
    )
    for epoch in epochs:
        train_loss = step.epoch()
        metrics = validate(model)  # leaves the model on ``device``
        history.append({"epoch": epoch, "train_loss": train_loss, **metrics})
        epochs.set_postfix(loss=f"{train_loss:.3f}", val=f"{metrics['val_criterion']:.4f}")
        if metrics["val_criterion"] < best_val:
            best_val, best_epoch, stale = metrics["val_criterion"], epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    calibration = calibrate(model, data.song_x[val_songs], data.targets[val_songs])
    weights = step.uncertainty.weights() if step.uncertainty is not None else {}
    return TrainResult(model, config, best_epoch, best_val, history, calibration, weights)


def calibrate(model: nn.Module, x: np.ndarray, targets: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-score calibration on validation songs: ``rmse``, ``n``, and with a ``<name>_std``
    output ``scale`` (calibrated std = ``scale * std``: unit mean square of ``r / (scale * std)``);
    ``coverage90``: share of targets inside the calibrated ±1.645 std band."""
    out = predict(model, x)
    result: dict[str, dict[str, float]] = {}
    for name, known, true in known_targets(out, targets, min_known=2):
        resid = out[name][known] - true
        entry = {"rmse": float(np.sqrt(np.mean(resid**2))), "n": float(known.sum())}
        std = out.get(f"{name}_std")
        if std is not None:
            std = np.maximum(std[known], 1e-6)
            entry["scale"] = float(np.sqrt(np.mean((resid / std) ** 2)))
        band = entry["scale"] * std if std is not None else entry["rmse"]
        entry["coverage90"] = float(np.mean(np.abs(resid) <= 1.645 * band))
        result[name] = entry
    return result
