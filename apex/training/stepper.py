"""One epoch of seeded mini-batch updates: regression rows and battles in the same forward pass.

Two seeded batch plans: **separate** (segment mode, or no battles) takes every training row once
an epoch plus each step's share of the battles' clips; **shared** (song mode with battles) lets
battle clips double as regression rows (non-``train`` targets masked) and fills up with the
training songs no battle covered: ``2 P + N_uncovered`` rows an epoch instead of ``2 P + N``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

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
    """Optimiser, schedule and batch plan of one training run."""

    def __init__(self, model, data, rows, config, battles, device) -> None:
        self.model, self.config, self.device, self.battles = model, config, device, battles
        self.shared = battles is not None and data.x is data.song_x
        if self.shared:  # rows are songs; non-train songs keep their embedding, lose their targets
            train = np.zeros(len(data.song_x), bool)
            train[data.row_song[rows]] = True
            targets = data.targets.copy()
            targets[~train] = np.nan
            self.x = torch.as_tensor(data.song_x).to(device)
            self.y = torch.as_tensor(targets).to(device)
            self.train_songs = np.flatnonzero(train)
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
        self.bf16 = config.precision == "bf16"

    def _plan_separate(self) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """(regression row indices into ``self.x``, battle positions) per step."""
        n, size = len(self.x), self.config.batch_size
        order = torch.randperm(n, generator=self.gen)
        steps = max(1, math.ceil(n / size))
        pairs = np.arange(0)
        if self.battles is not None:
            pairs = torch.randperm(len(self.battles), generator=self.gen).numpy()
        per = math.ceil(len(pairs) / steps)
        for i in range(steps):
            yield order[i * size : (i + 1) * size], pairs[i * per : (i + 1) * per]

    def _plan_shared(self) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """Battles first, then the training songs no battle of this epoch covers."""
        pairs = torch.randperm(len(self.battles), generator=self.gen).numpy()
        covered = np.zeros(len(self.x), bool)
        covered[self.battles.a] = covered[self.battles.b] = True
        rest = self.train_songs[~covered[self.train_songs]]
        rest = rest[torch.randperm(len(rest), generator=self.gen).numpy()]
        # as many steps as the separate plan (an epoch = the training songs in batches), so the
        # number of updates does not grow with the number of votes
        steps = max(1, math.ceil(len(self.train_songs) / self.config.batch_size))
        per, fill = math.ceil(len(pairs) / steps), math.ceil(len(rest) / steps)
        for i in range(steps):
            yield torch.as_tensor(rest[i * fill : (i + 1) * fill]), pairs[i * per : (i + 1) * per]

    def epoch(self) -> float:
        """One pass over the plan; returns the mean training loss."""
        self.model.train()
        if self.config.anchor:
            anchor(self.model)
        if self.config.hold_norm_stats:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        plan = self._plan_shared() if self.shared else self._plan_separate()
        losses = [self._step(rows, pick) for rows, pick in plan]
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
        with torch.autocast(dev.type, torch.bfloat16, enabled=self.bf16):
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
