"""The published APEX heads in both layouts (the reference ``.pt``; the Hub repo's ``config.json``
with ``model_type: "apex"`` + weights, read natively: its remote code never runs), and what every
checkpoint format shares (:class:`ModelInfo`, :class:`CheckpointError`, :func:`strict_load`)."""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from apex.encoders.base import SEGMENT_SECONDS
from apex.heads import ReferenceHeads
from apex.hub_files import Snapshot, SnapshotUnavailable, open_snapshot, read_json_object

#: What reading a damaged or foreign weights file raises: "not a loadable checkpoint".
UNREADABLE = (
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    SafetensorError,
)

#: Hub repo of the published APEX heads and the encoder they were trained on.
PUBLISHED_REPO = "amaai-lab/apex"
PUBLISHED_ENCODER = "m-a-p/MERT-v1-95M"
KINDS = ("published", "demo", "custom")


class CheckpointError(ValueError):
    """A checkpoint cannot be found, read or matched to its model; the message says what to do."""


@dataclass(frozen=True)
class ModelInfo:
    """Who a set of heads is: ``model_id`` (for people), ``version`` (refits count up), ``kind``
    (:data:`KINDS`), ``encoder_id`` they expect, ``heads_from`` (path or repo id), ``metadata``
    (``metadata.json``, read-only) and the Hub ``revision`` (None for local files)."""

    model_id: str
    version: str = "0"
    kind: str = "custom"
    encoder_id: str = PUBLISHED_ENCODER
    heads_from: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    revision: str | None = None

    def with_metadata(self, meta: Mapping[str, Any]) -> ModelInfo:
        """This info with a ``metadata.json`` ``meta`` and the identity it gives (kind: custom)."""
        return replace(
            self,
            model_id=str(meta.get("model_id", self.model_id)),
            version=str(meta.get("version", self.version)),
            kind=str(meta.get("kind", "custom")),
            encoder_id=str(meta.get("encoder_id", self.encoder_id)),
            metadata=meta,
        )

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
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "metadata"},
            "files": list(meta.get("files", [])),
            "from_cache": meta.get("from_cache"),
            "metrics": dict(meta.get("metrics", {})),
            "data_fingerprints": dict(meta.get("data_fingerprints", {})),
            "created": meta.get("created"),
        }


def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def strict_load(module: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load ``state`` (read from ``where``) into ``module``, requiring the same keys and shapes;
    :class:`CheckpointError` lists missing and unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    found = {"missing keys": missing, "unexpected keys": unexpected}
    found["shape mismatches (checkpoint != model)"] = shapes
    problems = [f"{what}: {_describe(keys)}" for what, keys in found.items() if keys]
    if problems:
        raise CheckpointError(
            f"{where} does not match {type(module).__name__}: " + "; ".join(problems) + ". "
            "The file is corrupted or was saved by a different architecture/config; re-download "
            "or re-export it, or check that its task/shared settings (reference) or config.json "
            "(ours) describe the same model."
        )
    module.load_state_dict(dict(state), strict=True)


# ---------------------------------------------------------------------------- reference .pt
def load_reference_checkpoint(path: str | Path) -> ReferenceHeads:
    """Load a reference ``.pt`` (``model_state``, ``task``, ``shared``, ``mode``) with
    ``weights_only=True``; from a bare state dict, task and depth are inferred from its keys. The
    heads (eval mode, CPU) carry ``checkpoint_info`` (task, shared, mode, epoch, val_loss);
    :class:`CheckpointError` for an unreadable file, wrong structure or mismatched keys."""
    raw = read_state_dict(Path(path))
    state, _ = normalize_state(raw, str(path))  # also unwraps DDP's "module." prefix
    task = "full" if any(k.startswith("branch_coherence.") for k in state) else "popularity"
    shared = 3 if any(k.startswith("shared.2.") for k in state) else 2
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


def reference_info(
    heads: ReferenceHeads, heads_from: str, snapshot: Snapshot | None = None
) -> ModelInfo:
    """A :class:`ModelInfo` for published heads (a reference ``.pt`` or the Hub layout, from
    their ``checkpoint_info``), with ``snapshot``'s repo, revision and files when from one."""
    meta = dict(getattr(heads, "checkpoint_info", {}))
    epoch = meta.get("epoch")
    layout = (
        "published_checkpoint" if meta.get("format") == "hub-config" else "reference_checkpoint"
    )
    metadata = {layout: meta, "metrics": {"val_loss": meta.get("val_loss")}}
    if snapshot is not None:
        metadata |= {"from_cache": snapshot.from_cache, "files": list(snapshot.files)}
    return ModelInfo(
        model_id=(snapshot and snapshot.repo_id) or Path(heads_from).name,
        version=f"epoch-{epoch}" if epoch is not None else "0",
        kind="published",
        encoder_id=str(meta.get("config", {}).get("mert_model_name", PUBLISHED_ENCODER)),
        heads_from=heads_from,
        metadata=metadata,
        revision=snapshot.revision if snapshot is not None else None,
    )


# ---------------------------------------------------------------------------- Hub layout
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
#: config.json keys that are ReferenceHeads arguments of the same name.
_CONFIG_ARGS = (
    "input_dim",
    "shared_dims",
    "branch_dims",
    "dropout_shared",
    "dropout_branch",
    "layer_indices",
)


def pick_heads_files(listing: Sequence[str]) -> list[str]:
    """From a repo listing: ``config.json`` + one weights file (+ our ``metadata.json``), else
    one reference ``.pt``; :class:`SnapshotUnavailable` (saying what it holds) if neither."""
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
    """A safetensors or pickle (``weights_only``) file's content; else :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; check the path or download it again.")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as err:
        raise CheckpointError(
            f"cannot read {path} ({path.stat().st_size} bytes, weights_only=True): "
            f"{type(err).__name__}: {err}. "
            "The file is truncated or not a checkpoint: delete it (for a Hub cache, its "
            "snapshot folder) and download it again."
        ) from err
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a state dict.")
    return raw


def normalize_state(raw: Mapping[str, Any], where: str) -> tuple[dict[str, torch.Tensor], list]:
    """Unwrap (``model_state``/``state_dict``) and un-prefix a heads state dict: the head
    tensors by :class:`ReferenceHeads` names, and the encoder tensors' names set aside (the
    remote code's ``mert.*``); :class:`CheckpointError` when it holds no tensor dict."""
    raw = next((raw[key] for key in _WRAPPERS if isinstance(raw.get(key), Mapping)), raw)
    if not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{where} holds no tensor state dict; it is not APEX heads.")
    state, ignored = {}, []
    for key, tensor in raw.items():
        name = key
        while name.startswith(_PREFIXES):
            name = name.split(".", 1)[1]
        if name.startswith(_ENCODER_PREFIXES):
            ignored.append(key)
        else:
            state[name] = tensor
    return state, ignored


def load_apex_directory(directory: Path, weights: str, *, heads_from: str) -> ReferenceHeads:
    """Heads from ``config.json`` (``model_type: "apex"``) + ``weights`` in ``directory``,
    carrying ``checkpoint_info`` (epoch, val_loss, weights file, layer mix, ignored tensors);
    :class:`CheckpointError` for an unreadable config or weights, or mismatched tensors."""
    config_path = directory / CONFIG_NAME
    config = read_json_object(config_path, CheckpointError)
    if config.get("model_type") != APEX_MODEL_TYPE:
        raise CheckpointError(
            f"{config_path}: model_type {config.get('model_type')!r} is not "
            f"{APEX_MODEL_TYPE!r}; this is not the published APEX layout."
        )
    weights_path = directory / weights
    state, ignored = normalize_state(read_state_dict(weights_path), str(weights_path))
    preference = any(k.startswith("branch_preference.") for k in state)  # apex.training.warm
    kwargs = {k: config[k] for k in _CONFIG_ARGS if k in config}
    kwargs = {k: tuple(int(v) for v in x) if isinstance(x, list) else x for k, x in kwargs.items()}
    try:
        heads = ReferenceHeads(task="full", preference=preference, **kwargs)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{config_path} is not a valid APEX config: {err}") from err
    n_mix = len(heads.layer_indices)
    want = {"aggregator.weight": (1, n_mix, 1), "aggregator.bias": (1,)}
    mix = {k: state.pop(k) for k in want if k in state}  # weight, bias
    if mix and (set(mix) != set(want) or any(tuple(mix[k].shape) != want[k] for k in mix)):
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
    strict_load(heads, state, f"{heads_from} ({weights})")
    if mix:
        heads.set_layer_mix(*mix.values(), f"{weights}: aggregator.weight/bias")
    heads.checkpoint_info = {
        "format": "hub-config",
        "weights_file": weights,
        "epoch": config.get("epoch"),
        "val_loss": float(config["val_loss"]) if "val_loss" in config else None,
        "layer_mix": heads.mix_from,
        "segment_sec": config.get("segment_sec"),
        "ignored_encoder_tensors": len(ignored),
        "config": {k: v for k, v in config.items() if k != "auto_map"},
    }
    return heads.eval()


def load_snapshot_heads(snapshot: Snapshot, heads_from: str) -> tuple[ReferenceHeads, ModelInfo]:
    """Published heads from a snapshot picked by :func:`pick_heads_files` (either layout); a
    ``metadata.json`` beside them (a refit's) is their identity."""
    first = snapshot.files[0]
    if first == CONFIG_NAME:
        heads = load_apex_directory(snapshot.directory, snapshot.files[1], heads_from=heads_from)
    else:
        heads = load_reference_checkpoint(snapshot.path(first))
    info = reference_info(heads, heads_from, snapshot)
    if "metadata.json" not in snapshot.files:
        return heads, info
    ours = json.loads(snapshot.path("metadata.json").read_text())
    return heads, info.with_metadata({**info.metadata, **ours, "files": list(snapshot.files)})


def load_published(
    repo_or_dir: str | Path = PUBLISHED_REPO, *, local_files_only: bool = False
) -> tuple[ReferenceHeads, ModelInfo]:
    """The published heads and their info (``encoder_id``: the encoder they need) from a Hub repo
    id or a local directory in either layout, cache first, then (unless ``local_files_only``) the
    Hub; :class:`CheckpointError` names the repo, the file and the error."""
    text = str(repo_or_dir)
    try:
        snapshot = open_snapshot(text, pick_heads_files, local_files_only=local_files_only)
    except SnapshotUnavailable as err:
        raise CheckpointError(f"published APEX heads {text}: {err}") from err
    try:
        return load_snapshot_heads(snapshot, text)
    except CheckpointError as err:
        where = f"revision {snapshot.revision}, " if snapshot.revision else ""
        raise CheckpointError(
            f"published APEX heads {text} ({where}files {', '.join(snapshot.files)}): {err}"
        ) from err
