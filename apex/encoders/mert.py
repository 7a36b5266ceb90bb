"""MERT (and any HuBERT-shaped checkpoint) as an :class:`~apex.encoders.base.Encoder`.

MERT-v1 checkpoints on the Hub declare ``model_type: "mert_model"`` and ship their own modelling
code. For MERT-v1 that code is transformers' HuBERT with a few switches that are off
(``feature_extractor_cqt``, ``deepnorm``) or harmless (``attention_relax`` only subtracts the row
maximum before the softmax, which leaves it unchanged). So we map the config onto transformers'
own :class:`~transformers.HubertConfig`, load the weights into :class:`~transformers.HubertModel`
and run no remote code; ``trust_remote_code=True`` (explicit opt-in) uses ``AutoModel`` instead.

Pipeline per clip, matching the APEX reference (``inference.py``): 30 s non-overlapping segments,
the last zero-padded to 30 s; the checkpoint's feature extractor settings (``do_normalize``:
zero mean / unit variance over the whole padded segment, as ``Wav2Vec2FeatureExtractor`` does);
the model with all hidden states; the mean over time of each hidden state (13 for 95M). We run
the segments of a song through the model in batches and pool two ways from the same forward
pass: over all frames (``layers_padded``, the reference) and over the frames that cover real
audio (``layers``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from apex.audio import SAMPLE_RATE, Audio
from apex.encoders.base import (
    SEGMENT_SECONDS,
    Embedding,
    Encoder,
    EncoderUnavailable,
    split_segments,
)

__all__ = ["MertEncoder", "mert_95m_config", "save_debug_checkpoint"]

PRECISIONS = ("fast", "reference")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's zero_mean_unit_var_norm epsilon.


class MertEncoder(Encoder):
    """A HuBERT-shaped model, pooled per 30 s segment and per hidden layer.

    Build with :meth:`from_pretrained`; the constructor takes an already-built model (the
    benchmark uses a randomly initialised MERT-95M-shaped one).

    Args:
        model: A transformers ``HubertModel`` (or remote-code MERT model) in eval mode.
        encoder_id: Identifier stored in embeddings and checked by heads.
        precision: ``"reference"`` (fp32, as published) or ``"fast"`` (bf16 where the device
            supports it, else fp32).
        device: Torch device; ``None`` picks CUDA when available.
        batch_size: Segments per forward pass.
        do_normalize: Apply zero-mean/unit-variance normalisation per padded segment (the
            checkpoint's ``preprocessor_config.json``).
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
        batch_size: int = 4,
        do_normalize: bool = False,
        sample_rate: int = SAMPLE_RATE,
        weights_key: str = "",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.encoder_id = encoder_id
        self.precision = precision
        self.batch_size = batch_size
        self.do_normalize = do_normalize
        self.sample_rate = sample_rate
        self.segment_seconds = SEGMENT_SECONDS
        self.weights_key = weights_key
        config = model.config
        self.num_layers = int(config.num_hidden_layers) + 1
        self.dim = int(config.hidden_size)
        self.compute_dtype = _fast_dtype(self.device) if precision == "fast" else torch.float32
        self.model = model.eval().to(self.device)
        if self.compute_dtype == torch.bfloat16:
            # Converting the weights once beats autocast (which re-casts every weight on every
            # call) and measured as accurate on the scores; see benchmarks/score_speed.py.
            self.model = self.model.to(torch.bfloat16)
        self.model.requires_grad_(False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        precision: str = "fast",
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool = False,
        batch_size: int = 4,
        encoder_id: str | None = None,
    ) -> MertEncoder:
        """Load a MERT / HuBERT checkpoint from a local directory or a Hub id.

        Args:
            name_or_path: Local directory with ``config.json``, ``preprocessor_config.json``
                (optional) and ``model.safetensors`` or ``pytorch_model.bin``; or a Hub repo id
                such as ``"m-a-p/MERT-v1-95M"``.
            precision: ``"fast"`` or ``"reference"``.
            device: Torch device; ``None`` picks CUDA when available.
            trust_remote_code: Run the checkpoint's own modelling code (``AutoModel``) instead
                of mapping it onto ``HubertModel``. Off unless explicitly asked for.
            local_files_only: Never touch the network (Hub ids must be in the local cache).
            batch_size: Segments per forward pass.
            encoder_id: Override the stored identifier (default: the Hub id, or for a local
                directory its ``_name_or_path`` when it names a Hub repo, else the folder name).

        Raises:
            EncoderUnavailable: The files cannot be found or downloaded, or essential weights
                are missing / the architecture cannot be represented without remote code.
        """
        directory, hub_id = _resolve(name_or_path, local_files_only=local_files_only)
        raw = json.loads((directory / "config.json").read_text())
        preprocessor = _read_preprocessor(directory)
        rate = int(preprocessor.get("sampling_rate", raw.get("sample_rate", SAMPLE_RATE)))
        weights_file = next(
            (directory / n for n in _WEIGHT_FILES if (directory / n).exists()), None
        )
        if weights_file is None:
            raise EncoderUnavailable(
                f"{directory} has no {' or '.join(_WEIGHT_FILES)}; download the complete "
                "checkpoint (e.g. `huggingface-cli download m-a-p/MERT-v1-95M`)."
            )
        if trust_remote_code:
            from transformers import AutoModel

            model = AutoModel.from_pretrained(
                str(directory), trust_remote_code=True, local_files_only=True
            )
        else:
            model = build_hubert(hubert_config_from_dict(raw, source=str(name_or_path)))
            report = load_weights(model, weights_file)
            if report["unused"]:
                warnings.warn(
                    f"{directory.name}: ignored {len(report['unused'])} checkpoint tensors not "
                    f"used by HubertModel: {report['unused'][:8]}",
                    stacklevel=2,
                )
        ident = encoder_id or hub_id or _local_id(directory, raw)
        return cls(
            model,
            encoder_id=ident,
            precision=precision,
            device=device,
            batch_size=batch_size,
            do_normalize=bool(preprocessor.get("do_normalize", False)),
            sample_rate=rate,
            weights_key=_fingerprint(weights_file),
        )

    # ------------------------------------------------------------------ encoding
    def settings_key(self) -> str:
        """Precision (effective dtype), segment length, normalisation, weights fingerprint."""
        dtype = str(self.compute_dtype).removeprefix("torch.")
        return (
            f"mert|{self.precision}-{dtype}|seg{self.segment_seconds:g}s|"
            f"norm{int(self.do_normalize)}|w{self.weights_key}"
        )

    def encode(self, audio: Audio) -> Embedding:
        """Embed a clip: ``[S, L, D]`` pooled hidden states for S = ceil(duration / 30 s)."""
        self._check_rate(audio)
        segment_samples = round(self.segment_seconds * self.sample_rate)
        segments, valid = split_segments(audio.waveform.to(torch.float32), segment_samples)
        if self.do_normalize:
            segments = _normalize(segments)
        valid_frames = _frames_for(self.model, valid)
        total_frames = int(_frames_for(self.model, torch.tensor([segment_samples]))[0])
        frame_mask = torch.arange(total_frames)[None, :] < valid_frames[:, None]  # [S, F]
        padded_out, valid_out = [], []
        with torch.inference_mode():
            for start in range(0, segments.shape[0], self.batch_size):
                batch = segments[start : start + self.batch_size].to(self.device)
                mask = frame_mask[start : start + self.batch_size].to(self.device)
                hidden = self._hidden_states(batch)
                padded, masked = _pool(hidden, mask)
                padded_out.append(padded.cpu())
                valid_out.append(masked.cpu())
        return Embedding(
            layers=torch.cat(valid_out),
            layers_padded=torch.cat(padded_out),
            seconds=valid.to(torch.float32) / self.sample_rate,
            encoder_id=self.encoder_id,
        )

    def _hidden_states(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """All hidden states of a batch of segments: L tensors ``[B, F, D]``."""
        context = (
            torch.autocast(self.device.type, dtype=self.compute_dtype)
            if self.compute_dtype != torch.float32
            else contextlib.nullcontext()
        )
        with context:
            out = self.model(batch.to(self.compute_dtype), output_hidden_states=True)
        return tuple(out.hidden_states)


def _pool(
    hidden: tuple[torch.Tensor, ...], mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means over all frames and over masked frames, in fp32: L x ``[B, F, D]`` -> ``[B, L, D]``.

    ``mask`` is ``[B, F]`` bool. Layers are pooled one at a time so that no ``[B, L, F, D]``
    copy (360 MB for four 95M segments) is ever made.
    """
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
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        # True on CPUs with native bf16 dot products (AVX512-BF16 / AMX); elsewhere bf16 is
        # emulated and slower than fp32.
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    return torch.float32


def _resolve(name_or_path: str | Path, *, local_files_only: bool) -> tuple[Path, str | None]:
    """Local directory for a path or Hub id; the second value is the Hub id (None if local)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise EncoderUnavailable(f"{path} has no config.json; is it a model directory?")
        return path, None
    if path.exists() or str(name_or_path).count("/") != 1 or str(name_or_path).startswith("."):
        raise EncoderUnavailable(
            f"{name_or_path!s} is neither a model directory nor a Hub id like 'm-a-p/MERT-v1-95M'."
        )
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "preprocessor_config.json", *_WEIGHT_FILES, "*.py"]
    try:
        local = snapshot_download(
            str(name_or_path), allow_patterns=patterns, local_files_only=local_files_only
        )
    except Exception as error:  # offline, missing repo, auth: all mean "cannot have it now"
        raise EncoderUnavailable(
            f"Cannot get encoder {name_or_path!s} from the Hugging Face Hub or its local cache "
            f"({type(error).__name__}: {error}). Connect to the internet once, or download it "
            "to a directory and pass that path, or use the built-in 'fallback' encoder."
        ) from error
    return Path(local), str(name_or_path)


def _read_preprocessor(directory: Path) -> dict[str, Any]:
    path = directory / "preprocessor_config.json"
    return json.loads(path.read_text()) if path.exists() else {}


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


# ---------------------------------------------------------------------- HuBERT mapping
# MERT config fields with no HubertConfig counterpart, and the value that HubertModel reproduces.
_MERT_SWITCHES: dict[str, Any] = {"feature_extractor_cqt": False, "deepnorm": False}
# Weight-norm tensors saved by older torch (MERT's pytorch_model.bin) -> parametrization names.
_LEGACY_RENAMES = {
    "pos_conv_embed.conv.weight_g": "pos_conv_embed.conv.parametrizations.weight.original0",
    "pos_conv_embed.conv.weight_v": "pos_conv_embed.conv.parametrizations.weight.original1",
}
_OPTIONAL_KEYS = frozenset({"masked_spec_embed"})  # only used for masking during pre-training


def hubert_config_from_dict(raw: dict[str, Any], *, source: str = "checkpoint") -> Any:
    """Map a MERT (``mert_model``) or HuBERT ``config.json`` onto transformers' ``HubertConfig``.

    Raises:
        EncoderUnavailable: The checkpoint uses a MERT feature HubertModel cannot express
            (CQT input features, DeepNorm residual scaling); such checkpoints need
            ``trust_remote_code=True``.
    """
    from transformers import HubertConfig

    for key, supported in _MERT_SWITCHES.items():
        if raw.get(key, supported) != supported:
            raise EncoderUnavailable(
                f"{source}: {key}={raw[key]!r} cannot be loaded into transformers' HubertModel; "
                "load it with trust_remote_code=True (runs the checkpoint's own code) if you "
                "trust its authors."
            )
    known = set(HubertConfig().to_dict())
    kwargs = {k: v for k, v in raw.items() if k in known and not k.startswith("_")}
    for key in ("model_type", "architectures", "auto_map", "transformers_version", "torch_dtype"):
        kwargs.pop(key, None)
    # Inference only: no SpecAugment masking, no dropout. Keep mask_time_prob so that a
    # checkpoint's masked_spec_embed still has a home (it is unused at inference).
    kwargs.update(layerdrop=0.0, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    kwargs.update(feat_proj_dropout=0.0, final_dropout=0.0)
    return HubertConfig(**kwargs)


def build_hubert(config: Any, *, seed: int | None = None) -> torch.nn.Module:
    """A ``HubertModel`` for ``config`` in eval mode; random weights, seeded if ``seed`` given."""
    from transformers import HubertModel

    if seed is not None:
        torch.manual_seed(seed)
    return HubertModel(config).eval()


def mert_95m_config(**overrides: Any) -> Any:
    """``HubertConfig`` of MERT-v1-95M's shape (12 x 768, 75 Hz at 24 kHz), built offline.

    Args:
        **overrides: HubertConfig fields to change (the debug checkpoint shrinks the widths).
    """
    from transformers import HubertConfig

    fields: dict[str, Any] = dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        conv_dim=(512,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_bias=False,
        feat_extract_norm="group",
        feat_proj_layer_norm=True,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        do_stable_layer_norm=False,
        layer_norm_eps=1e-5,
        layerdrop=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    fields.update(overrides)
    return HubertConfig(**fields)


def load_weights(model: torch.nn.Module, weights_file: Path) -> dict[str, list[str]]:
    """Load a checkpoint's tensors into ``model``, renaming legacy keys; report what did not fit.

    Returns:
        ``{"unused": [...], "missing": [...]}`` — checkpoint keys the model has no place for
        (e.g. pre-training heads) and optional model keys the checkpoint lacks.

    Raises:
        EncoderUnavailable: Essential weights are missing or have the wrong shape.
    """
    if weights_file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
    else:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
    expected = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = key
        for prefix in ("hubert.", "mert.", "model."):
            if name.startswith(prefix) and name.removeprefix(prefix) in expected:
                name = name.removeprefix(prefix)
        for old, new in _LEGACY_RENAMES.items():
            name = name.replace(old, new)
        renamed[name] = tensor
    missing = sorted(set(expected) - set(renamed))
    essential = [k for k in missing if k not in _OPTIONAL_KEYS]
    wrong = [k for k in expected if k in renamed and renamed[k].shape != expected[k].shape]
    if essential or wrong:
        raise EncoderUnavailable(
            f"{weights_file}: does not fit HubertModel for its config.json: missing "
            f"{essential[:10]}{' ...' if len(essential) > 10 else ''}, wrong shape {wrong[:10]}. "
            "Is it a HuBERT-shaped checkpoint (MERT-v1)? Otherwise try trust_remote_code=True."
        )
    unused = sorted(set(renamed) - set(expected))
    model.load_state_dict({k: v for k, v in renamed.items() if k in expected}, strict=False)
    return {"unused": unused, "missing": missing}


def save_debug_checkpoint(
    directory: str | Path, *, seed: int = 0, do_normalize: bool = True
) -> Path:
    """Write a tiny random MERT-style checkpoint (a few hundred KB) loadable by ``from_pretrained``.

    It has MERT's conv strides (75 frames per second at 24 kHz), hidden size 32, 2 layers and
    2 heads; ``config.json`` says ``model_type: "mert_model"`` with an ``auto_map`` like the Hub
    checkpoints, and the positional-conv weights are saved under the legacy ``weight_g`` /
    ``weight_v`` names, so tests go through the same mapping as the real MERT.

    Args:
        directory: Where to write (created if needed).
        seed: Seed of the random weights.
        do_normalize: The ``preprocessor_config.json`` normalisation switch.

    Returns:
        ``directory`` as a Path.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = mert_95m_config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    model = build_hubert(config, seed=seed)
    inverse = {new: old for old, new in _LEGACY_RENAMES.items()}
    state = {}
    for key, tensor in model.state_dict().items():
        for new, old in inverse.items():
            key = key.replace(new, old)
        state[key] = tensor.contiguous()
    save_file(state, str(out / "model.safetensors"))
    raw = {k: v for k, v in config.to_dict().items() if not k.startswith("_")}
    raw.update(
        model_type="mert_model",
        architectures=["MERTModel"],
        auto_map={
            "AutoConfig": "configuration_MERT.MERTConfig",
            "AutoModel": "modeling_MERT.MERTModel",
        },
        feature_extractor_cqt=False,
        feature_extractor_cqt_bins=336,
        deepnorm=False,
        attention_relax=-1.0,
        sample_rate=SAMPLE_RATE,
    )
    (out / "config.json").write_text(json.dumps(raw, indent=2, default=list))
    preprocessor = {
        "do_normalize": do_normalize,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": True,
        "sampling_rate": SAMPLE_RATE,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return out
