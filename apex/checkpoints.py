"""Our checkpoint format and :func:`load_model` for every layout (the published ones through
:mod:`apex.published`). Ours: a directory (or Hub repo) of ``model.safetensors``, ``config.json``
(:class:`~apex.heads.HeadsConfig`) and ``metadata.json`` (``model_id``, ``version``, ``kind``,
``encoder_id``, ``metrics``, ``reference_distribution``: per score the sorted predictions on
reference songs, for percentiles). Every load is strict."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from torch import nn

from apex.files import write_json_atomic
from apex.heads import ApexHeads, HeadsConfig
from apex.hub_files import SnapshotUnavailable, open_snapshot, read_json_object
from apex.hub_files import hub_reachable as hub_reachable  # public here: annotation.pool.sources
from apex.published import (  # the shared names are public here, the checkpoint API's home
    APEX_MODEL_TYPE,
    CONFIG_NAME,
    KINDS,
    CheckpointError,
    ModelInfo,
    load_reference_checkpoint,
    load_snapshot_heads,
    pick_heads_files,
    read_state_dict,
    reference_info,
    strict_load,
)

WEIGHTS_NAME = "model.safetensors"
METADATA_NAME = "metadata.json"
FORMAT_VERSION = 1


def save_model(model: ApexHeads, directory: str | Path, *, metadata: Mapping[str, Any]) -> Path:
    """Save ``model`` in our format in ``directory`` (created if needed); return it. ``metadata``
    must hold ``encoder_id``; ``model_id`` (directory name), ``version`` ("0"), ``kind``
    ("custom"), ``format_version`` and ``created`` (UTC ISO time) are filled in."""
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
    write_json_atomic(directory / METADATA_NAME, meta, default=float)  # numpy numbers: floats
    return directory


def load_model(
    path_or_repo: str | Path, *, local_files_only: bool = False
) -> tuple[nn.Module, ModelInfo]:
    """Heads and their :class:`ModelInfo` from a ``.pt`` file, a directory or a Hub repo id: a
    reference ``.pt`` (a directory's with its ``metadata.json``: refits), the published layout
    (``config.json`` with ``model_type: "apex"``) or ours. Of a Hub repo only the files its layout
    needs are downloaded (cache first). :class:`CheckpointError` for missing files, an unreadable
    config, an offline Hub or mismatched keys."""
    spec = str(path_or_repo)
    if Path(spec).is_file():
        heads = load_reference_checkpoint(spec)
        return heads, reference_info(heads, spec)
    try:
        snapshot = open_snapshot(spec, pick_heads_files, local_files_only=local_files_only)
    except SnapshotUnavailable as err:
        raise CheckpointError(
            f"cannot load model {spec!r}: {err} Pass a directory with config.json and "
            "model.safetensors, a reference .pt file or a Hub repo id; if you are offline, "
            "download the repo once while online."
        ) from err
    if snapshot.files[0] == CONFIG_NAME:
        config = read_json_object(snapshot.path(CONFIG_NAME), CheckpointError)
        if config.get("model_type") != APEX_MODEL_TYPE:
            return _load_ours(snapshot.directory, config, spec, snapshot.revision)
    return load_snapshot_heads(snapshot, spec)


def _load_ours(
    directory: Path, raw_config: Mapping[str, Any], spec: str, revision: str | None
) -> tuple[nn.Module, ModelInfo]:
    """Our safetensors + config.json (+ metadata.json) heads from ``directory``."""
    try:
        config = HeadsConfig(**{f.name: raw_config[f.name] for f in fields(HeadsConfig)})
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{spec}: {CONFIG_NAME} is not a valid heads config: {err}") from err
    weights, meta_file = directory / WEIGHTS_NAME, directory / METADATA_NAME
    heads = ApexHeads(config)
    strict_load(heads, read_state_dict(weights), str(weights))
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    meta.setdefault("heads_config", asdict(config))
    info = ModelInfo(Path(spec).name, heads_from=spec, revision=revision).with_metadata(meta)
    return heads.eval(), info
