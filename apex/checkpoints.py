"""Checkpoints: the published reference ``.pt`` format and our own safetensors + JSON format.

Our format is a directory (or a Hub model repo) holding

- ``model.safetensors``: the :class:`~apex.heads.ApexHeads` state dict;
- ``config.json``: the :class:`~apex.heads.HeadsConfig` fields (what ``from_pretrained`` reads);
- ``metadata.json``: model id and version, ``kind`` (``"published"``, ``"demo"`` or ``"custom"``),
  ``encoder_id`` (the encoder the heads were trained on), ``reference_distribution`` (per score, a
  sorted list of the model's predictions on reference songs; percentiles are read against it),
  ``data_fingerprints``, ``metrics`` and anything else the trainer records.

The published heads (``amaai-lab/apex``: ``config.json`` with ``model_type: "apex"`` +
``pytorch_model.bin``) load through :mod:`apex.published`; :func:`load_model` dispatches to it for
that layout, whether given a directory or a Hub repo id.

Every load is strict: a missing, unexpected or mis-shaped tensor raises :class:`CheckpointError`
naming the keys and what to do, never a silent partial load.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apex.heads import ApexHeads, HeadsConfig, ReferenceHeads
from apex.hub_files import hub_reachable  # noqa: F401  (public here, lives in hub_files)

#: Hub repo of the published APEX heads and the encoder they were trained on.
PUBLISHED_REPO = "amaai-lab/apex"
PUBLISHED_ENCODER = "m-a-p/MERT-v1-95M"

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
METADATA_NAME = "metadata.json"
FORMAT_VERSION = 1
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
    except Exception as err:  # pickle errors come in many types; all mean "not loadable safely"
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
        heads = ReferenceHeads(task=task, shared=shared, mode=mode)
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


# ---------------------------------------------------------------------------- our format
def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=float))
    os.replace(tmp, path)  # readers never see a half-written file


def save_model(model: ApexHeads, directory: str | Path, *, metadata: Mapping[str, Any]) -> Path:
    """Save ``model`` as ``model.safetensors`` + ``config.json`` + ``metadata.json``.

    Args:
        model: the heads to save.
        directory: target directory (created if needed).
        metadata: must contain ``encoder_id``; ``model_id`` (default: directory name),
            ``version`` (default ``"0"``) and ``kind`` (default ``"custom"``) are filled in, as are
            ``format_version`` and ``created`` (UTC ISO time).

    Returns:
        The directory.
    """
    if not isinstance(model, ApexHeads):
        raise TypeError(f"save_model saves ApexHeads, got {type(model).__name__}")
    if "encoder_id" not in metadata:
        raise CheckpointError("metadata needs 'encoder_id' (the encoder the heads were trained on)")
    directory = Path(directory)
    kind = metadata.get("kind", "custom")
    if kind not in KINDS:
        raise CheckpointError(f"metadata kind must be one of {KINDS}, got {kind!r}")
    meta = {
        "model_id": directory.name,
        "version": "0",
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **dict(metadata),
    }
    model.save_pretrained(directory, config=model.config)
    _write_json(directory / METADATA_NAME, meta)
    return directory


def load_model(
    path_or_repo: str | Path, *, local_files_only: bool = False
) -> tuple[nn.Module, ModelInfo]:
    """Load heads and their :class:`ModelInfo` from a directory, a Hub repo id or a ``.pt`` file.

    A ``.pt``/``.pth`` file is read as a reference checkpoint (:func:`load_reference_checkpoint`),
    and so is a directory holding one ``.pt`` (plus an optional ``metadata.json``) but no
    ``config.json``: the layout :mod:`apex.training` writes for reference-architecture refits.
    A ``config.json`` with ``model_type: "apex"`` is the published Hub layout
    (:mod:`apex.published`); any other ``config.json`` is ours. A Hub repo id is listed (local
    cache first) and only the files that layout needs are downloaded.

    Raises:
        CheckpointError: missing files, unreadable config, offline Hub, or mismatched keys.
    """
    from apex.hub_files import SnapshotUnavailable, fetch_snapshot, is_repo_id
    from apex.published import load_snapshot_heads, pick_heads_files, read_config

    source = str(path_or_repo)
    if Path(source).is_file():
        heads = load_reference_checkpoint(source)
        return heads, reference_info(heads, source)
    if Path(source).is_dir():
        directory = Path(source)
        reference_files = sorted(directory.glob("*.pt"))
        if reference_files and not (directory / CONFIG_NAME).is_file():
            return _load_reference_dir(directory, reference_files)
    elif is_repo_id(source):
        try:
            snapshot = fetch_snapshot(source, pick_heads_files, local_files_only=local_files_only)
        except SnapshotUnavailable as err:
            raise CheckpointError(
                f"cannot get Hub model {source!r}: {err} If you are offline, download it once "
                "while online or pass a local directory."
            ) from err
        config = snapshot.path(CONFIG_NAME)
        if snapshot.files[0] != CONFIG_NAME or _is_published(read_config(config)):
            return load_snapshot_heads(snapshot, source)
        return _load_ours(snapshot.directory, source, snapshot.revision)
    else:
        raise CheckpointError(
            f"{source!r} is neither a model directory nor a Hub repo id (owner/name); pass a "
            "directory with config.json and model.safetensors, a reference .pt file, or a repo id."
        )
    if not (directory / CONFIG_NAME).is_file():
        raise CheckpointError(f"{source} has no {CONFIG_NAME}; save models with apex.checkpoints.")
    if _is_published(read_config(directory / CONFIG_NAME)):
        from apex.hub_files import from_directory

        return load_snapshot_heads(from_directory(directory, pick_heads_files), source)
    return _load_ours(directory, source, None)


def _is_published(config: Mapping[str, Any]) -> bool:
    from apex.published import APEX_MODEL_TYPE

    return config.get("model_type") == APEX_MODEL_TYPE


def _load_ours(directory: Path, source: str, revision: str | None) -> tuple[nn.Module, ModelInfo]:
    """Our safetensors + config.json (+ metadata.json) heads from ``directory``."""
    files = {name: directory / name for name in (CONFIG_NAME, WEIGHTS_NAME, METADATA_NAME)}
    if not files[WEIGHTS_NAME].is_file():
        raise CheckpointError(f"{source} has no {WEIGHTS_NAME}; save models with apex.checkpoints.")
    try:
        raw_config = json.loads(files[CONFIG_NAME].read_text())
        config = HeadsConfig(**{f.name: raw_config[f.name] for f in fields(HeadsConfig)})
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{files[CONFIG_NAME]} is not a valid heads config: {err}") from err
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(files[WEIGHTS_NAME]))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read {files[WEIGHTS_NAME]}: {err}; re-save it.") from err
    heads = ApexHeads(config)
    strict_load(heads, state, str(files[WEIGHTS_NAME]))
    meta: dict[str, Any] = {}
    if files[METADATA_NAME].is_file():
        meta = json.loads(files[METADATA_NAME].read_text())
    meta.setdefault("heads_config", asdict(config))
    info = ModelInfo(
        model_id=str(meta.get("model_id", Path(source).name)),
        version=str(meta.get("version", "0")),
        kind=str(meta.get("kind", "custom")),
        encoder_id=str(meta.get("encoder_id", PUBLISHED_ENCODER)),
        source=source,
        metadata=meta,
        revision=revision,
    )
    return heads.eval(), info


def _load_reference_dir(directory: Path, candidates: list[Path]) -> tuple[nn.Module, ModelInfo]:
    """A reference ``.pt`` in a directory, with the directory's ``metadata.json`` as its info."""
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise CheckpointError(f"{directory} holds several .pt files ({names}); pass one file.")
    heads = load_reference_checkpoint(candidates[0])
    base = reference_info(heads, str(directory), model_id=directory.name)
    meta_file = directory / METADATA_NAME
    if not meta_file.is_file():
        return heads, base
    meta = {**base.metadata, **json.loads(meta_file.read_text())}
    info = ModelInfo(
        model_id=str(meta.get("model_id", directory.name)),
        version=str(meta.get("version", base.version)),
        kind=str(meta.get("kind", "custom")),
        encoder_id=str(meta.get("encoder_id", PUBLISHED_ENCODER)),
        source=str(directory),
        metadata=meta,
    )
    return heads, info
