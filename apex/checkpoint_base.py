"""What every checkpoint format shares, and the reference's ``.pt`` format.

:class:`ModelInfo` (what a model is: id, version, kind, encoder, metadata), :class:`CheckpointError`
and :func:`strict_load` are used by our format (:mod:`apex.checkpoints`) and by the published
layout (:mod:`apex.published`) alike; :func:`load_reference_checkpoint` reads the APEX reference
code's ``.pt`` files. Both formats build on this module, and it imports neither of them.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apex.heads import ReferenceHeads

#: What reading a damaged or foreign weights file raises (torch's zip reader, the restricted
#: unpickler of ``weights_only``, a short read): each means "not a loadable checkpoint".
UNREADABLE: tuple[type[BaseException], ...] = (
    RuntimeError,
    ValueError,
    OSError,
    EOFError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)

#: Hub repo of the published APEX heads and the encoder they were trained on.
PUBLISHED_REPO = "amaai-lab/apex"
PUBLISHED_ENCODER = "m-a-p/MERT-v1-95M"

KINDS = ("published", "demo", "custom")


class CheckpointError(ValueError):
    """A checkpoint cannot be found, read or matched to its model; the message says what to do."""


@dataclass(frozen=True)
class ModelInfo:
    """Who a set of heads is: identity, provenance and the statistics the scorer needs.

    Attributes:
        model_id: a name for people (repo id, directory name or file name).
        version: model version string (refits count up).
        kind: ``"published"``, ``"demo"`` or ``"custom"``.
        encoder_id: the encoder the heads expect (``"fallback"`` or a MERT id/path).
        source: where the heads were loaded from (path or repo id).
        metadata: the full ``metadata.json`` content (treat as read-only).
        revision: the Hub commit the files came from (None for plain local files).
    """

    model_id: str
    version: str = "0"
    kind: str = "custom"
    encoder_id: str = PUBLISHED_ENCODER
    source: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    revision: str | None = None

    @property
    def is_demo(self) -> bool:
        """True for the offline demo model trained on the synthetic corpus."""
        return self.kind == "demo"

    def reference_distribution(self, name: str) -> list[float]:
        """Sorted reference values of score ``name`` (empty when the model stores none)."""
        return list(self.metadata.get("reference_distribution", {}).get(name, []))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the About tab and ``Scorer.info()``."""
        meta = self.metadata
        return {
            "model_id": self.model_id,
            "version": self.version,
            "kind": self.kind,
            "encoder_id": self.encoder_id,
            "source": self.source,
            "revision": self.revision,
            "files": list(meta.get("files", [])),
            "from_cache": meta.get("from_cache"),
            "metrics": dict(meta.get("metrics", {})),
            "data_fingerprints": dict(meta.get("data_fingerprints", {})),
            "created": meta.get("created"),
        }


# ---------------------------------------------------------------------------- strict loading
def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def strict_load(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` requiring exactly the same keys and shapes.

    Raises:
        CheckpointError: listing missing keys, unexpected keys and shape mismatches.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches (checkpoint != model): {_describe(shapes)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match {type(module).__name__}: " + "; ".join(problems) + ". "
            "The file is corrupted or was saved by a different architecture/config; re-download "
            "or re-export it, or check that its task/shared settings (reference) or config.json "
            "(ours) describe the same model."
        )
    module.load_state_dict(dict(state), strict=True)


# ---------------------------------------------------------------------------- reference format
def _infer_reference_layout(state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    task = "full" if any(k.startswith("branch_coherence.") for k in state) else "popularity"
    shared = 3 if any(k.startswith("shared.2.") for k in state) else 2
    return task, shared


def load_reference_checkpoint(path: str | Path) -> ReferenceHeads:
    """Load a published-format ``.pt`` checkpoint (``model_state``, ``task``, ``shared``, ``mode``).

    Loaded with ``torch.load(..., weights_only=True)``: no pickled code runs. A bare state dict
    (no ``model_state`` wrapper) is accepted too, with task/depth inferred from its keys. The
    returned heads carry ``checkpoint_info`` (task, shared, mode, epoch, val_loss) and are in eval
    mode on the CPU.

    Raises:
        CheckpointError: unreadable file, wrong structure, or keys that do not match.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"reference checkpoint {path} does not exist; check the path.")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as err:  # all mean "not loadable safely"
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint with weights_only=True ({err}). "
            "It may be truncated or not a checkpoint; re-download it."
        ) from err
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a checkpoint dict.")
    state = raw.get("model_state", raw)
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(
            f"{path} has no tensor state dict under 'model_state'; it is not an APEX checkpoint."
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}  # tolerate DDP wrapping
    task, shared = _infer_reference_layout(state)
    task, shared = raw.get("task", task), int(raw.get("shared", shared))
    mode = raw.get("mode", "song")
    try:
        preference = any(k.startswith("branch_preference.") for k in state)  # a refit's
        heads = ReferenceHeads(task=task, shared=shared, mode=mode, preference=preference)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    strict_load(heads, state, f"{path} (task={task!r}, shared={shared})")
    heads.checkpoint_info = {
        "task": task,
        "shared": shared,
        "mode": mode,
        "epoch": raw.get("epoch"),
        "val_loss": float(raw["val_loss"]) if "val_loss" in raw else None,
    }
    return heads.eval()


def reference_info(heads: ReferenceHeads, source: str, *, model_id: str | None = None) -> ModelInfo:
    """A :class:`ModelInfo` for heads from :func:`load_reference_checkpoint`."""
    meta = dict(getattr(heads, "checkpoint_info", {}))
    epoch = meta.get("epoch")
    return ModelInfo(
        model_id=model_id or Path(source).name,
        version=f"epoch-{epoch}" if epoch is not None else "0",
        kind="published",
        encoder_id=PUBLISHED_ENCODER,
        source=source,
        metadata={"reference_checkpoint": meta, "metrics": {"val_loss": meta.get("val_loss")}},
    )
