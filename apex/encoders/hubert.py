"""MERT checkpoints as transformers' own ``HubertModel``: config mapping, weights, debug model.

MERT-v1's config is HuBERT's plus switches that are off in v1 or inert at inference."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch

from apex.audio import SAMPLE_RATE
from apex.encoders.base import EncoderUnavailable

# MERT config fields with no HubertConfig counterpart, and the value that HubertModel reproduces.
_MERT_SWITCHES: dict[str, Any] = {"feature_extractor_cqt": False, "deepnorm": False}
# Weight-norm tensors saved by older torch (MERT's pytorch_model.bin) -> parametrization names.
_LEGACY_RENAMES = {
    "pos_conv_embed.conv.weight_g": "pos_conv_embed.conv.parametrizations.weight.original0",
    "pos_conv_embed.conv.weight_v": "pos_conv_embed.conv.parametrizations.weight.original1",
}
# config.json entries about the file, not the model.
_NOT_FIELDS = {"model_type", "architectures", "auto_map", "transformers_version", "torch_dtype"}
_OPTIONAL_KEYS = frozenset({"masked_spec_embed"})  # only used for masking during pre-training
# Inference only: no dropout (mask_time_prob stays so masked_spec_embed has a home).
_NO_DROPOUT = {
    "layerdrop": 0.0,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
}


def hubert_config_from_dict(raw: dict[str, Any], *, where: str = "checkpoint") -> Any:
    """Map a MERT or HuBERT ``config.json`` onto ``HubertConfig``; :class:`EncoderUnavailable`
    for MERT features HubertModel cannot express (CQT input, DeepNorm): remote code only."""
    from transformers import HubertConfig

    for key, supported in _MERT_SWITCHES.items():
        if raw.get(key, supported) != supported:
            raise EncoderUnavailable(
                f"{where}: {key}={raw[key]!r} cannot be loaded into transformers' HubertModel; "
                "load it with trust_remote_code=True (runs the checkpoint's own code) if you "
                "trust its authors."
            )
    known = set(HubertConfig().to_dict()) - _NOT_FIELDS
    kwargs = {k: v for k, v in raw.items() if k in known and not k.startswith("_")}
    return HubertConfig(**{**kwargs, **_NO_DROPOUT})


def build_hubert(
    config: Any, *, seed: int | None = None, initialize: bool = True
) -> torch.nn.Module:
    """A ``HubertModel`` for ``config`` in eval mode, random weights seeded by ``seed``.
    ``initialize=False`` skips initialisation (3 s for 95M on a CPU) for weights loaded right
    after (:func:`load_weights` refuses any missing essential tensor)."""
    from transformers import HubertModel
    from transformers.initialization import no_init_weights

    if seed is not None:
        torch.manual_seed(seed)
    with contextlib.nullcontext() if initialize else no_init_weights():
        return HubertModel(config).eval()


class ChannelsLastFeatureEncoder(torch.nn.Module):
    """``HubertFeatureEncoder`` (``original``, its modules and keys kept) as ``(1, k)`` 2-D
    convolutions over channels-last ``[B, C, 1, T]``: the same arithmetic in the layout oneDNN's
    CPU kernels want (1.7x faster than 1-D convolutions, bf16 and fp32, for MERT's layers)."""

    def __init__(self, original: torch.nn.Module) -> None:
        super().__init__()
        self.conv_layers = original.conv_layers

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` samples -> ``[B, C, F]`` features (a channels-last view)."""
        hidden = input_values[:, None, None, :]  # [B, 1, 1, T]
        for layer in self.conv_layers:
            conv = layer.conv
            hidden = torch.nn.functional.conv2d(
                hidden.contiguous(memory_format=torch.channels_last),
                conv.weight.unsqueeze(2),
                conv.bias,
                stride=(1, conv.stride[0]),
            )
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, torch.nn.LayerNorm):  # over channels: last dim when permuted
                hidden = norm(hidden.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            elif norm is not None:
                hidden = norm(hidden)
            hidden = layer.activation(hidden)
        return hidden.squeeze(2)


def use_channels_last_features(model: torch.nn.Module) -> bool:
    """Swap ``model.feature_extractor`` for :class:`ChannelsLastFeatureEncoder`; whether it
    did (only HuBERT-style conv layers with ``conv`` and ``activation`` are swapped)."""
    encoder = getattr(model, "feature_extractor", None)
    layers = getattr(encoder, "conv_layers", None)
    if layers is None or isinstance(encoder, ChannelsLastFeatureEncoder):
        return False
    fits = all(
        isinstance(getattr(layer, "conv", None), torch.nn.Conv1d)
        and hasattr(layer, "activation")
        and layer.conv.padding == (0,)
        and layer.conv.dilation == (1,)
        and layer.conv.groups == 1
        for layer in layers
    )
    if fits:
        model.feature_extractor = ChannelsLastFeatureEncoder(encoder)
    return fits


class BlockedAttention(torch.nn.Module):
    """``HubertAttention`` (``original``, its projections and keys kept) computed ``block``
    queries at a time: ``softmax((q / sqrt(d)) k^T) v`` with each ``[H, block, T]`` score tile
    kept in cache; on CPU in bf16 about twice as fast as SDPA for MERT's 2249-frame segments."""

    def __init__(self, original: torch.nn.Module, block: int = 128) -> None:
        super().__init__()
        for name, child in original.named_children():  # q/k/v/out_proj, in the original order
            self.add_module(name, child)
        self.num_heads, self.head_dim = original.num_heads, original.head_dim
        self.scaling = original.scaling
        self.block = block

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any
    ) -> tuple[torch.Tensor, None]:
        """``[B, T, D]`` -> ``([B, T, D], None)``; ``attention_mask`` bool (keep) or additive,
        broadcastable to ``[B, H, T, T]``."""
        batch, frames, _ = hidden_states.shape

        def split_heads(x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, d]
            return x.view(batch, frames, self.num_heads, self.head_dim).transpose(1, 2).contiguous()

        query = split_heads(self.q_proj(hidden_states) * self.scaling)
        key = split_heads(self.k_proj(hidden_states))
        value = split_heads(self.v_proj(hidden_states))
        out = value.new_empty(batch, frames, self.num_heads, self.head_dim)
        for b in range(batch):
            keys_t = key[b].transpose(1, 2)  # [H, d, T]
            for start in range(0, frames, self.block):
                rows = slice(start, start + self.block)
                scores = torch.bmm(query[b, :, rows], keys_t)  # [H, block, T]
                if attention_mask is not None:
                    mask = attention_mask[b if attention_mask.shape[0] > 1 else 0][..., rows, :]
                    scores = (
                        scores.masked_fill(~mask, float("-inf"))
                        if mask.dtype == torch.bool
                        else scores + mask
                    )
                probs = torch.softmax(scores, dim=-1)
                out[b, rows] = torch.bmm(probs, value[b]).transpose(0, 1)
        return self.out_proj(out.reshape(batch, frames, -1)), None


def use_blocked_attention(model: torch.nn.Module, block: int = 128) -> int:
    """Swap every ``HubertAttention`` in ``model`` for :class:`BlockedAttention`; how many."""
    from transformers.models.hubert.modeling_hubert import HubertAttention

    swapped = 0
    for layer in getattr(getattr(model, "encoder", None), "layers", ()):
        attention = getattr(layer, "attention", None)
        if isinstance(attention, HubertAttention) and not attention.is_decoder:
            layer.attention = BlockedAttention(attention, block)
            swapped += 1
    return swapped


def mert_95m_config(**overrides: Any) -> Any:
    """``HubertConfig`` of MERT-v1-95M's shape (12 x 768, 75 Hz at 24 kHz: HubertConfig's
    defaults), without dropout, with ``overrides``."""
    from transformers import HubertConfig

    return HubertConfig(**{**_NO_DROPOUT, **overrides})


def load_weights(model: torch.nn.Module, weights_file: Path) -> list[str]:
    """Load a checkpoint's tensors into ``model`` (legacy keys renamed); returns the checkpoint
    keys that have no place in it. :class:`EncoderUnavailable`: essential weights missing or of
    the wrong shape."""
    if weights_file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
    else:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
    expected = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        for old, new in _LEGACY_RENAMES.items():
            key = key.replace(old, new)
        for prefix in ("hubert.", "mert.", "model."):
            if key.startswith(prefix) and key.removeprefix(prefix) in expected:
                key = key.removeprefix(prefix)
        renamed[key] = tensor
    essential = sorted(set(expected) - set(renamed) - _OPTIONAL_KEYS)
    wrong = [k for k in expected if k in renamed and renamed[k].shape != expected[k].shape]
    if essential or wrong:
        raise EncoderUnavailable(
            f"{weights_file}: does not fit HubertModel for its config.json: missing "
            f"{essential[:10]}{' ...' if len(essential) > 10 else ''}, wrong shape {wrong[:10]}. "
            "Is it a HuBERT-shaped checkpoint (MERT-v1)? Otherwise try trust_remote_code=True."
        )
    model.load_state_dict({k: v for k, v in renamed.items() if k in expected}, strict=False)
    return sorted(set(renamed) - set(expected))


def legacy_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict under the names MERT's Hub checkpoints use (``weight_g`` /
    ``weight_v`` of the positional conv), contiguous: what :func:`load_weights` maps back."""
    state = {}
    for key, tensor in model.state_dict().items():
        for old, new in _LEGACY_RENAMES.items():
            key = key.replace(new, old)
        state[key] = tensor.contiguous()
    return state


def config_json(config: Any) -> dict[str, Any]:
    """A ``HubertConfig`` as the fields of a ``config.json`` (private ``_`` keys dropped)."""
    return {k: v for k, v in config.to_dict().items() if not k.startswith("_")}


def save_debug_checkpoint(directory: str | Path) -> Path:
    """Write a tiny random MERT-style checkpoint (under 1 MB: MERT's conv strides, width 32, 2
    layers, 2 heads, seed 0) into ``directory``; return it. Its ``config.json`` (``mert_model``,
    ``auto_map``) and legacy ``weight_g``/``weight_v`` names are the Hub's, so tests take the
    real MERT's mapping; its ``preprocessor_config.json`` sets ``do_normalize`` (tests cover it)."""
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
    model = build_hubert(config, seed=0)
    save_file(legacy_state_dict(model), str(out / "model.safetensors"))
    raw = config_json(config)
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
    write_preprocessor_config(out, do_normalize=True)
    return out


def write_preprocessor_config(directory: Path, *, do_normalize: bool = False) -> None:
    """Write MERT-v1-95M's ``preprocessor_config.json`` (``do_normalize`` false on the Hub)."""
    preprocessor = {
        "do_normalize": do_normalize,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": True,
        "sampling_rate": SAMPLE_RATE,
    }
    (Path(directory) / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
