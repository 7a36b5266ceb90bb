"""MERT (any HuBERT-shaped checkpoint) as an :class:`~apex.encoders.base.Encoder`, pooled as the
reference's ``inference.py``; ``fast`` precision: bf16 (fp16 on CUDA without bf16) under autocast,
plus CPU layouts (``benchmarks/score_speed.py``)."""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from apex.audio import SAMPLE_RATE, Audio
from apex.encoders.base import Embedding, Encoder, EncoderUnavailable, split_segments
from apex.encoders.hubert import (
    build_hubert,
    hubert_config_from_dict,
    load_weights,
    save_debug_checkpoint,
    use_blocked_attention,
    use_channels_last_features,
)
from apex.hub_files import SnapshotUnavailable, open_snapshot, read_json_object

__all__ = ["MertEncoder", "save_debug_checkpoint"]

PRECISIONS = ("fast", "reference")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's zero_mean_unit_var_norm epsilon.


class MertEncoder(Encoder):
    """A built HuBERT-shaped ``model`` pooled per 30 s segment and hidden layer (checkpoints:
    :meth:`from_pretrained`).

    Args:
        encoder_id: Stored in embeddings and checked by heads.
        precision: ``"reference"`` (fp32, as published) or ``"fast"`` (bf16 where native).
        device: ``None`` picks CUDA when available.
        batch_size: Segments per forward pass; None: 4 on CUDA, 1 on CPU (faster per segment).
        do_normalize: Normalise each padded segment (``preprocessor_config.json``).
        sample_rate: Model input rate, Hz.
        weights_key: Short fingerprint of the weights, part of :meth:`settings_key`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        encoder_id: str,
        precision: str = "fast",
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        do_normalize: bool = False,
        sample_rate: int = SAMPLE_RATE,
        weights_key: str = "",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        batch_size = (4 if self.device.type == "cuda" else 1) if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.encoder_id = encoder_id
        self.precision = precision
        self.batch_size = batch_size
        self.do_normalize = do_normalize
        self.sample_rate = sample_rate
        self.weights_key = weights_key
        self.revision: str | None = None
        config = model.config
        self.num_layers = int(config.num_hidden_layers) + 1
        self.dim = int(config.hidden_size)
        self.compute_dtype = _fast_dtype(self.device) if precision == "fast" else torch.float32
        self.model = model.eval().to(self.device)
        if self.compute_dtype == torch.bfloat16:
            # Converted once (autocast keeps its fp32 ops): scores as accurate as autocast over
            # fp32 weights, half the memory, no per-call casts.
            self.model = self.model.to(torch.bfloat16)
        if precision == "fast" and self.device.type == "cpu":
            # Same arithmetic, CPU-friendly layouts; in fp32 the fused SDPA attention is faster.
            use_channels_last_features(self.model)
            if self.compute_dtype == torch.bfloat16:
                use_blocked_attention(self.model)
        self.model.requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        precision: str = "fast",
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool = False,
        batch_size: int | None = None,
    ) -> MertEncoder:
        """Load a MERT / HuBERT checkpoint (:func:`pick_mert_files`) from a directory or a Hub
        id such as ``"m-a-p/MERT-v1-95M"``; its encoder id: the Hub id, or a directory's
        ``_name_or_path`` when it names a Hub repo, else the folder name. ``trust_remote_code``:
        run the checkpoint's own code (``AutoModel``), an explicit opt-in; ``local_files_only``:
        never touch the network. :class:`EncoderUnavailable`: the files cannot be had, essential
        weights are missing, or the architecture needs remote code."""
        pick = functools.partial(pick_mert_files, remote_code=trust_remote_code)
        try:
            snapshot = open_snapshot(name_or_path, pick, local_files_only=local_files_only)
        except SnapshotUnavailable as error:
            raise EncoderUnavailable(
                f"Cannot get encoder {name_or_path!s}: {error} Connect to the internet once, or "
                "download it to a directory and pass that path, or use the built-in 'fallback' "
                "encoder."
            ) from error
        directory = snapshot.directory
        raw = read_json_object(directory / "config.json", EncoderUnavailable)
        preprocessor = _read_preprocessor(directory)
        weights_file = directory / snapshot.files[1]
        if trust_remote_code:
            from transformers import AutoModel

            model = AutoModel.from_pretrained(
                str(directory), trust_remote_code=True, local_files_only=True
            )
        else:
            config = hubert_config_from_dict(raw, where=str(name_or_path))
            model = build_hubert(config, initialize=False)
            unused = load_weights(model, weights_file)
            if unused:
                warnings.warn(
                    f"{directory.name}: ignored {len(unused)} checkpoint tensors not used by "
                    f"HubertModel: {unused[:8]}",
                    stacklevel=2,
                )
        encoder = cls(
            model,
            encoder_id=snapshot.repo_id or _local_id(directory, raw),
            precision=precision,
            device=device,
            batch_size=batch_size,
            do_normalize=bool(preprocessor.get("do_normalize", False)),
            sample_rate=int(preprocessor.get("sampling_rate", raw.get("sample_rate", SAMPLE_RATE))),
            weights_key=_fingerprint(weights_file),
        )
        encoder.revision = snapshot.revision
        return encoder

    def settings_key(self) -> str:
        """Precision (effective dtype), segment length, normalisation, weights fingerprint."""
        dtype = str(self.compute_dtype).removeprefix("torch.")
        return (
            f"mert|{self.precision}-{dtype}|seg{self.segment_seconds:g}s|"
            f"norm{int(self.do_normalize)}|w{self.weights_key}"
        )

    def encode_batch(self, audios: Sequence[Audio]) -> list[Embedding]:
        """One :class:`Embedding` ``[S_i, L, D]`` per clip, in order; the segments of all clips
        run ``batch_size`` at a time, so short clips fill each other's batches."""
        segment_samples = round(self.segment_seconds * self.sample_rate)
        total_frames = int(_frames_for(self.model, torch.tensor([segment_samples]))[0])
        pieces, counts, valids = [], [], []
        for audio in audios:
            self._check_rate(audio)
            segments, valid = split_segments(audio.waveform.to(torch.float32), segment_samples)
            pieces.append(_normalize(segments) if self.do_normalize else segments)
            counts.append(segments.shape[0])
            valids.append(valid)
        if not pieces:
            return []
        segments, valid = torch.cat(pieces), torch.cat(valids)
        frame_mask = torch.arange(total_frames)[None, :] < _frames_for(self.model, valid)[:, None]
        padded_out, valid_out = [], []
        reduced = self.compute_dtype != torch.float32
        with torch.inference_mode():
            for start in range(0, segments.shape[0], self.batch_size):
                rows = slice(start, start + self.batch_size)
                batch = segments[rows].to(self.device, self.compute_dtype)
                mask = frame_mask[rows].to(self.device)
                with torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=reduced):
                    out = self.model(batch, output_hidden_states=True)
                padded, masked = _pool(out.hidden_states, mask)
                padded_out.append(padded.cpu())
                valid_out.append(masked.cpu())
        layers = torch.cat(valid_out).split(counts)
        layers_padded = torch.cat(padded_out).split(counts)
        seconds = (valid.to(torch.float32) / self.sample_rate).split(counts)
        return [  # clones: each clip's tensors own their storage (safetensors, memory)
            Embedding(a.clone(), b.clone(), c.clone(), encoder_id=self.encoder_id)
            for a, b, c in zip(layers, layers_padded, seconds, strict=True)
        ]


def _pool(
    hidden: tuple[torch.Tensor, ...], mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means over all frames and over ``mask`` ``[B, F]``, fp32: L x ``[B, F, D]`` -> ``[B, L, D]``
    each (layer by layer: no ``[B, L, F, D]`` copy, 360 MB for four 95M segments)."""
    weights = mask.to(torch.float32)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    padded = [h.float().mean(dim=1) for h in hidden]
    masked = [torch.einsum("bfd,bf->bd", h.float(), weights) for h in hidden]
    return torch.stack(padded, dim=1), torch.stack(masked, dim=1)


def _normalize(segments: torch.Tensor) -> torch.Tensor:
    """Wav2Vec2FeatureExtractor's ``do_normalize`` on each padded ``[S, N]`` segment."""
    as64 = segments.to(torch.float64)
    mean = as64.mean(dim=1, keepdim=True)
    var = as64.var(dim=1, unbiased=False, keepdim=True)
    return ((as64 - mean) / torch.sqrt(var + _NORM_EPS)).to(torch.float32)


def _frames_for(model: torch.nn.Module, samples: torch.Tensor) -> torch.Tensor:
    """Encoder frames computed entirely from the first ``samples`` samples (conv arithmetic)."""
    frames = samples.clone()
    for kernel, stride in zip(model.config.conv_kernel, model.config.conv_stride, strict=True):
        frames = torch.div(frames - kernel, stride, rounding_mode="floor") + 1
    # A segment with any audio keeps at least one frame so its masked mean is defined.
    return torch.where(samples > 0, frames.clamp(min=1), torch.zeros_like(frames))


def _fast_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        from apex.batching import on_zero_gpu  # apex.batching imports apex.encoders

        # ZeroGPU has no GPU to ask outside @spaces.GPU calls; all its GPUs have bf16.
        bf16 = on_zero_gpu() or torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        # Native bf16 dot products (AVX512-BF16 / AMX) only; emulated bf16 is slower than fp32.
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    return torch.float32


def pick_mert_files(listing: Sequence[str], *, remote_code: bool = False) -> list[str]:
    """``config.json``, ``preprocessor_config.json`` if any, one weights file (safetensors
    first) and with ``remote_code`` the top-level ``*.py``; never the fairseq ``.pt`` (1.32 GB).
    :class:`SnapshotUnavailable` without ``config.json`` or weights."""
    names = set(listing)
    weights = next((n for n in _WEIGHT_FILES if n in names), None)
    if "config.json" not in names or weights is None:
        raise SnapshotUnavailable(
            f"it needs config.json and one of {', '.join(_WEIGHT_FILES)} (it holds: "
            f"{', '.join(sorted(names)) or 'nothing'})"
        )
    files = ["config.json", weights]
    if "preprocessor_config.json" in names:
        files.append("preprocessor_config.json")
    if remote_code:
        files += sorted(n for n in names if n.endswith(".py") and "/" not in n)
    return files


def _read_preprocessor(directory: Path) -> dict[str, Any]:
    """``preprocessor_config.json`` (mono only), or ``{}``. Its attention mask, all ones over the
    padded segment, is not passed: HuBERT computes it as none (newer code made NaNs of it)."""
    path = directory / "preprocessor_config.json"
    if not path.exists():
        return {}
    data = read_json_object(path, EncoderUnavailable)
    if int(data.get("feature_size", 1)) != 1:
        raise EncoderUnavailable(f"{path}: feature_size {data['feature_size']} is not 1 (mono).")
    return data


def _local_id(directory: Path, raw: dict[str, Any]) -> str:
    name = str(raw.get("_name_or_path", ""))
    return name if name.count("/") == 1 and not Path(name).is_absolute() else directory.name


def _fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """Cheap identity of a weights file: size plus its first and last MiB, 12 hex chars."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(chunk))
        handle.seek(max(0, path.stat().st_size - chunk))
        digest.update(handle.read(chunk))
    return digest.hexdigest()[:12]
