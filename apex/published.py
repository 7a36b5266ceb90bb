"""The published APEX heads as the Hub repo ``amaai-lab/apex`` really holds them, read natively.

The repo is a transformers remote-code repo: ``config.json`` (``model_type: "apex"``, the
architecture: ``input_dim``, ``shared_dims``, ``branch_dims``, ``layer_indices``, ``segment_sec``,
``seed``, ``mert_model_name``, dropouts, ``epoch``, ``val_loss``) and the weights in
``pytorch_model.bin`` (or ``model.safetensors``). We never run its code: the architecture is built
from ``config.json`` as :class:`~apex.heads.ReferenceHeads` and every head tensor must match by
name and shape (:func:`~apex.checkpoints.strict_load`). The state dict may be bare, wrapped
(``{"model_state": ...}`` or ``{"state_dict": ...}``) or prefixed (``model.``, ``apex.``,
``module.``). ``aggregator.weight`` ``[1, L, 1]`` / ``aggregator.bias`` ``[1]``, when present, are
the checkpoint's own layer mix and replace the seed-42 draw. The reference's ``.pt`` layout
(``best_model.pt``) keeps loading through :func:`~apex.checkpoints.load_reference_checkpoint`.

:func:`load_published` is the one entry point the scorer uses: it returns the heads, their
:class:`~apex.checkpoints.ModelInfo` (with the revision) and the encoder the config names, or
raises :class:`~apex.checkpoints.CheckpointError` with the exact reason (repo, file, error).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from apex.checkpoint_base import (
    PUBLISHED_ENCODER,
    PUBLISHED_REPO,
    UNREADABLE,
    CheckpointError,
    ModelInfo,
    load_reference_checkpoint,
    reference_info,
    strict_load,
)
from apex.encoders.base import SEGMENT_SECONDS
from apex.heads import ReferenceHeads
from apex.hub_files import (
    Snapshot,
    SnapshotUnavailable,
    fetch_snapshot,
    from_directory,
    is_repo_id,
)

APEX_MODEL_TYPE = "apex"
CONFIG_NAME = "config.json"
#: Weight files of a config.json repo, in order of preference (safetensors runs no pickle).
WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
#: Where the GitHub reference writes and reads its ``.pt`` (``train.py``, README).
REFERENCE_FILES: tuple[str, ...] = ("best_model.pt", "models/best_model.pt")
_PREFIXES = ("module.", "model.", "apex.")
_WRAPPERS = ("model_state", "state_dict")
#: Tensors of the encoder the remote code keeps inside its model; not heads, never used.
_ENCODER_PREFIXES = ("mert.", "mert_processor.")
_AGGREGATOR = ("aggregator.weight", "aggregator.bias")
#: config.json keys -> ReferenceHeads arguments (the reference's values are the defaults).
_CONFIG_ARGS = {
    "input_dim": "input_dim",
    "shared_dims": "shared_dims",
    "branch_dims": "branch_dims",
    "dropout_shared": "dropout_shared",
    "dropout_branch": "dropout_branch",
    "layer_indices": "layer_indices",
}


@dataclass(frozen=True)
class PublishedModel:
    """Published heads ready to serve.

    Attributes:
        heads: the heads in eval mode on the CPU.
        info: who they are (``kind="published"``, ``revision``, ``source``).
        encoder_spec: the encoder the heads were trained on (config ``mert_model_name``).
    """

    heads: nn.Module
    info: ModelInfo
    encoder_spec: str


def pick_heads_files(listing: Sequence[str]) -> list[str]:
    """The files to read from a repo listing: ``config.json`` + one weights file (+ our
    ``metadata.json``), else one reference ``.pt``.

    Raises:
        SnapshotUnavailable: the listing has neither layout (the message lists what it has).
    """
    names = set(listing)
    extra = ["metadata.json"] if "metadata.json" in names else []
    if CONFIG_NAME in names:
        weights = next((n for n in WEIGHT_FILES if n in names), None)
        if weights is None:
            raise SnapshotUnavailable(
                f"it has {CONFIG_NAME} but no {' or '.join(WEIGHT_FILES)} (it holds: "
                f"{', '.join(sorted(names))})"
            )
        return [CONFIG_NAME, weights, *extra]
    pts = [n for n in REFERENCE_FILES if n in names] or sorted(
        n for n in names if n.endswith((".pt", ".pth"))
    )
    if len(pts) == 1 or (pts and pts[0] in REFERENCE_FILES):
        return [pts[0], *extra]
    raise SnapshotUnavailable(
        f"it holds neither {CONFIG_NAME} with {' or '.join(WEIGHT_FILES)} nor one reference .pt "
        f"(it holds: {', '.join(sorted(names)) or 'nothing'})"
    )


def read_state_dict(path: Path) -> Mapping[str, Any]:
    """The raw content of a weights file: safetensors, or a pickle read with ``weights_only``.

    Raises:
        CheckpointError: unreadable (truncated, not a checkpoint), naming the file and its size.
    """
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; download the complete repo again.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (*UNREADABLE, SafetensorError) as err:  # one meaning: not a loadable file
        raise CheckpointError(
            f"cannot read {path} ({path.stat().st_size} bytes): {type(err).__name__}: {err}. "
            "The file is truncated or not a checkpoint: delete it (for a Hub cache, its "
            "snapshot folder) and download it again."
        ) from err
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a state dict.")
    return raw


def normalize_state(raw: Mapping[str, Any], source: str) -> tuple[dict[str, torch.Tensor], list]:
    """Unwrap (``model_state``/``state_dict``) and un-prefix a heads state dict.

    Returns:
        The head tensors by the names :class:`ReferenceHeads` uses, and the encoder tensor names
        that were set aside (the remote code's ``mert.*``; never used).

    Raises:
        CheckpointError: no tensor dict inside.
    """
    for key in _WRAPPERS:
        if isinstance(raw.get(key), Mapping):
            raw = raw[key]
            break
    if not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{source} holds no tensor state dict; it is not APEX heads.")
    state: dict[str, torch.Tensor] = {}
    ignored = []
    for key, tensor in raw.items():
        name = key
        while name.startswith(_PREFIXES):
            name = name.split(".", 1)[1]
        if name.startswith(_ENCODER_PREFIXES):
            ignored.append(key)
        else:
            state[name] = tensor
    return state, ignored


def read_config(path: Path) -> dict[str, Any]:
    """A ``config.json`` as a dict.

    Raises:
        CheckpointError: unreadable or not a JSON object (naming the file).
    """
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read {path}: {type(err).__name__}: {err}; download it again."
        ) from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a {type(config).__name__}, not a JSON object.")
    return config


def _heads_kwargs(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    if config.get("model_type") != APEX_MODEL_TYPE:
        raise CheckpointError(
            f"{source} says model_type {config.get('model_type')!r}, not {APEX_MODEL_TYPE!r}."
        )
    kwargs: dict[str, Any] = {}
    for key, arg in _CONFIG_ARGS.items():
        if key in config:
            value = config[key]
            kwargs[arg] = tuple(int(v) for v in value) if isinstance(value, list) else value
    return kwargs


def load_apex_directory(directory: Path, weights: str, *, source: str) -> ReferenceHeads:
    """Heads from ``config.json`` (``model_type: "apex"``) + ``weights`` in ``directory``.

    The returned heads carry ``checkpoint_info``: the config's ``epoch``, ``val_loss``, the
    weights file, where the layer mix came from and the set-aside encoder tensors.

    Raises:
        CheckpointError: unreadable config or weights, or tensors that do not match by name
            and shape (missing, unexpected and mis-shaped keys are named).
    """
    config_path = directory / CONFIG_NAME
    config = read_config(config_path)
    weights_path = directory / weights
    state, ignored = normalize_state(read_state_dict(weights_path), str(weights_path))
    # A refit of these heads (apex.training.warm) adds a preference branch, in the same layout.
    preference = any(k.startswith("branch_preference.") for k in state)
    try:
        kwargs = _heads_kwargs(config, str(config_path))
        heads = ReferenceHeads(task="full", preference=preference, **kwargs)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{config_path} is not a valid APEX config: {err}") from err
    mix = {k: state.pop(k) for k in _AGGREGATOR if k in state}
    n_mix = len(heads.layer_indices)
    want = {"aggregator.weight": (1, n_mix, 1), "aggregator.bias": (1,)}
    if mix and (set(mix) != set(_AGGREGATOR) or any(tuple(mix[k].shape) != want[k] for k in mix)):
        got = {k: tuple(v.shape) for k, v in mix.items()}
        raise CheckpointError(
            f"{weights_path}: the layer mix must be aggregator.weight {want['aggregator.weight']} "
            f"and aggregator.bias (1,) for {n_mix} layers, got {got}. The file does not match "
            f"{CONFIG_NAME}'s layer_indices; re-export it."
        )
    if not mix and (n_mix != 4 or config.get("seed", 42) != 42):
        raise CheckpointError(
            f"{weights_path} has no aggregator.* and {CONFIG_NAME} asks for seed "
            f"{config.get('seed', 42)} over {n_mix} layers; only the reference's seed-42 mix of "
            "4 layers is known. Export the checkpoint with its aggregator.weight/bias."
        )
    if config.get("segment_sec", SEGMENT_SECONDS) != SEGMENT_SECONDS:
        raise CheckpointError(
            f"{config_path}: segment_sec {config['segment_sec']} is not the {SEGMENT_SECONDS:g} s "
            "segments the MERT encoder pools; these heads cannot be served as trained."
        )
    strict_load(heads, state, f"{source} ({weights})")
    if mix:
        weight, bias = mix["aggregator.weight"], mix["aggregator.bias"]
        heads.set_layer_mix(weight, bias, f"{weights}: aggregator.weight/bias")
    heads.checkpoint_info = {
        "format": "hub-config",
        "weights_file": weights,
        "epoch": config.get("epoch"),
        "val_loss": float(config["val_loss"]) if "val_loss" in config else None,
        "layer_mix": heads.mix_source,
        "segment_sec": config.get("segment_sec"),
        "ignored_encoder_tensors": len(ignored),
        "config": {k: v for k, v in config.items() if k != "auto_map"},
    }
    return heads.eval()


def _model_info(heads: ReferenceHeads, snapshot: Snapshot, source: str) -> ModelInfo:
    meta = dict(heads.checkpoint_info)
    config = meta.get("config", {})
    epoch = meta.get("epoch")
    if "metadata.json" in snapshot.files:  # a refit of the published heads: its own identity
        ours = json.loads(snapshot.path("metadata.json").read_text())
        return ModelInfo(
            model_id=str(ours.get("model_id", snapshot.repo_id or source)),
            version=str(ours.get("version", "0")),
            kind=str(ours.get("kind", "custom")),
            encoder_id=str(
                ours.get("encoder_id", config.get("mert_model_name", PUBLISHED_ENCODER))
            ),
            source=source,
            revision=snapshot.revision,
            metadata={**ours, "published_checkpoint": meta, "files": list(snapshot.files)},
        )
    return ModelInfo(
        model_id=snapshot.repo_id or source,
        version=f"epoch-{epoch}" if epoch is not None else "0",
        kind="published",
        encoder_id=str(config.get("mert_model_name", PUBLISHED_ENCODER)),
        source=source,
        revision=snapshot.revision,
        metadata={
            "published_checkpoint": meta,
            "metrics": {"val_loss": meta.get("val_loss")},
            "from_cache": snapshot.from_cache,
            "files": list(snapshot.files),
        },
    )


def load_snapshot_heads(snapshot: Snapshot, source: str) -> tuple[ReferenceHeads, ModelInfo]:
    """Published heads from a snapshot picked by :func:`pick_heads_files` (either layout)."""

    first = snapshot.files[0]
    if first == CONFIG_NAME:
        heads = load_apex_directory(snapshot.directory, snapshot.files[1], source=source)
        return heads, _model_info(heads, snapshot, source)
    heads = load_reference_checkpoint(snapshot.path(first))
    base = reference_info(heads, source, model_id=snapshot.repo_id or source)
    meta = {**base.metadata, "from_cache": snapshot.from_cache, "files": list(snapshot.files)}
    info = ModelInfo(
        model_id=base.model_id,
        version=base.version,
        kind="published",
        encoder_id=base.encoder_id,
        source=source,
        revision=snapshot.revision,
        metadata=meta,
    )
    return heads, info


def load_published(
    source: str | Path = PUBLISHED_REPO, *, local_files_only: bool = False
) -> PublishedModel:
    """The published APEX heads and the encoder they need, from the cache first, then the Hub.

    Args:
        source: a Hub repo id (default ``amaai-lab/apex``) or a local directory in the same
            layout (``config.json`` + ``pytorch_model.bin``/``model.safetensors``, or a ``.pt``).
        local_files_only: never use the network (a cached snapshot still loads).

    Raises:
        CheckpointError: with the exact reason: which repo, which file, which error.
    """
    text = str(source)
    try:
        if Path(text).expanduser().is_dir():
            snapshot = from_directory(Path(text).expanduser(), pick_heads_files)
        elif is_repo_id(text):
            snapshot = fetch_snapshot(text, pick_heads_files, local_files_only=local_files_only)
        else:
            raise CheckpointError(f"{text!r} is neither a directory nor a Hub id (owner/name).")
    except SnapshotUnavailable as err:
        raise CheckpointError(f"published APEX heads {text}: {err}") from err
    if snapshot.files[0] == CONFIG_NAME:
        config = read_config(snapshot.path(CONFIG_NAME))
        if config.get("model_type") != APEX_MODEL_TYPE:
            raise CheckpointError(
                f"{snapshot.path(CONFIG_NAME)}: model_type {config.get('model_type')!r} is not "
                f"{APEX_MODEL_TYPE!r}; this is not the published APEX layout."
            )
    try:
        heads, info = load_snapshot_heads(snapshot, text)
    except CheckpointError as err:
        where = f"revision {snapshot.revision}, " if snapshot.revision else ""
        raise CheckpointError(
            f"published APEX heads {text} ({where}files {', '.join(snapshot.files)}): {err}"
        ) from err
    return PublishedModel(heads, info, info.encoder_id)
