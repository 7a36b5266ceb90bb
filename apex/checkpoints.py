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
import time
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from torch import nn

from apex.checkpoint_base import (  # noqa: F401  (public here: the checkpoint API's home)
    KINDS,
    PUBLISHED_ENCODER,
    PUBLISHED_REPO,
    CheckpointError,
    ModelInfo,
    load_reference_checkpoint,
    reference_info,
    strict_load,
)
from apex.files import write_text_atomic
from apex.heads import ApexHeads, HeadsConfig
from apex.hub_files import hub_reachable  # noqa: F401  (public here, lives in hub_files)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
METADATA_NAME = "metadata.json"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- our format
def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Readers never see a half-written file (numpy numbers are written as floats)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=float))


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
