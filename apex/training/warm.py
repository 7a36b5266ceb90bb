"""Warm start, score drift and the published layout: a refit learns listeners without
unlearning the scores (the gate holds an anchored refit to ``gate.DRIFT_BOUNDS``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from apex.files import atomic_path, write_text_atomic
from apex.heads import ApexHeads, ReferenceHeads
from apex.tasks import SCORE_NAMES
from apex.training.loop import predict


def warm_start(serving, encoder_id: str) -> tuple[nn.Module | None, str]:
    """``(trainable copy of serving's heads, "serving <model_id> <version>")``, or ``(None,
    why)`` when there is no serving model (``(heads, info)``) of ``encoder_id`` and family."""
    if serving is None:
        return None, "random init: no serving model"
    heads, info = serving
    if info.encoder_id != encoder_id:
        return None, (
            f"random init: the serving model reads {info.encoder_id!r}, the data {encoder_id!r}"
        )
    if not isinstance(heads, (ReferenceHeads, ApexHeads)):
        return None, f"random init: cannot fine-tune {type(heads).__name__}"
    model = copy.deepcopy(heads).float()
    if isinstance(model, ReferenceHeads) and not model.has_preference:
        torch.manual_seed(0)
        model.add_preference()
    return model, f"serving {info.model_id} {info.version}"


def family_of(model: nn.Module) -> dict[str, object]:
    """The :class:`~apex.training.config.TrainConfig` fields of a warm start from ``model``."""
    warm = {"hold_norm_stats": True}  # fine-tune the served normalisation, never re-estimate it
    if isinstance(model, ReferenceHeads):
        shared = min(model.shared_depth, 3)
        return {"family": "reference", "task": model.task, "shared": shared, **warm}
    return {"family": "apex", "task": "full", **warm}


@torch.no_grad()
def score_drift(challenger: nn.Module, serving: nn.Module, x: np.ndarray) -> dict[str, float]:
    """Mean absolute change of each score both models predict on songs ``x`` ``[N, L, D]``."""
    if len(x) == 0:
        return {}
    new, old = predict(challenger, x), predict(copy.deepcopy(serving).float(), x)
    return {
        n: float(np.mean(np.abs(new[n] - old[n]))) for n in SCORE_NAMES if n in new and n in old
    }


def save_reference_layout(model: ReferenceHeads, directory: Path, metadata: dict) -> Path:
    """Save refitted reference heads in the published layout (``config.json``,
    ``model.safetensors`` with the layer mix as ``aggregator.*``) plus ``metadata.json``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    info = getattr(model, "checkpoint_info", {}) or {}
    linears = [m for m in model.shared.modules() if isinstance(m, nn.Linear)]
    branch = getattr(model, f"branch_{model.output_names[0]}")
    config = {
        **info.get("config", {}),
        "model_type": "apex",
        "input_dim": model.input_dim,
        "shared_dims": [m.out_features for m in linears],
        "branch_dims": [m.out_features for m in branch.modules() if isinstance(m, nn.Linear)][:-1],
        "layer_indices": list(model.layer_indices),
        "mert_model_name": metadata["encoder_id"],
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state["aggregator.weight"] = model.mix_weight.detach().reshape(1, -1, 1).clone()
    state["aggregator.bias"] = model.mix_bias.detach().reshape(1).clone()
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    write_text_atomic(directory / "config.json", json.dumps(config, indent=2))
    meta = {"model_id": directory.name, "version": directory.name, **metadata}
    write_text_atomic(directory / "metadata.json", json.dumps(meta, indent=2, default=float))
    return directory
