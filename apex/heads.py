"""Prediction heads: the reference APEX MLP (checkpoint compatible) and our own. Both map pooled
hidden states ``[B, L, D]``, or ``[B, S, L, D]`` with a ``mask`` ``[B, S]`` (True: the segment has
audio), to the scores keyed by :data:`apex.tasks.SCORE_NAMES` on their scales."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields

import torch
from huggingface_hub import PyTorchModelHubMixin
from scipy.special import expit
from torch import nn

from apex.tasks import ENGAGEMENT, SCORE_NAMES, SCORE_RANGES, TASK_OUTPUTS

#: Hidden states the reference mixes: ``LAYER_INDICES = [2, 5, 8, -1]`` of MERT-v1-95M's 13.
REFERENCE_LAYERS: tuple[int, ...] = (2, 5, 8, 12)

#: The reference's layer mix ``nn.Conv1d(4, 1, 1)``, never trained: PyTorch's default init right
#: after ``torch.manual_seed(42)`` (torch 2.9.1, float32, exact digits), stored so scoring never
#: depends on the RNG; tests/apex/test_heads.py recomputes it.
REFERENCE_LAYER_MIX: dict[str, tuple[float, ...]] = {
    "weight": (0.3822692632675171, 0.4150039553642273, -0.11713624000549316, 0.45930564403533936),
    "bias": (-0.10955178737640381,),
}

#: Input width of the reference heads (MERT-v1-95M hidden size).
REFERENCE_DIM = 768


def _to_score_scale(raw: torch.Tensor, name: str) -> torch.Tensor:
    """Squash a logit onto score ``name``'s range with a sigmoid, as the reference does."""
    low, high = SCORE_RANGES[name]
    return torch.sigmoid(raw) * (high - low) + low


# ---------------------------------------------------------------------------- reference heads
def _block(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear -> BatchNorm1d -> GELU -> Dropout, named ``block`` like the reference's blocks."""
    layers = (nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.GELU(), nn.Dropout(dropout))
    return nn.Sequential(OrderedDict(block=nn.Sequential(*layers)))


class _Branch(nn.Module):
    """One task branch (256-128-64-1 in the reference) squashed onto the score's scale."""

    def __init__(self, name: str, in_dim: int, dims: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.name, self.squash = name, name != "preference"  # preference: an unbounded logit
        widths = (in_dim, *dims)
        blocks = [_block(a, b, dropout) for a, b in itertools.pairwise(widths)]
        self.branch = nn.Sequential(*blocks, nn.Linear(widths[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.branch(x).squeeze(1)
        return _to_score_scale(raw, self.name) if self.squash else raw


class _MixedHeads(nn.Module):
    """Mix layers, average segments, predict. Subclasses define ``mix([..., L, D]) -> [..., D']``
    and ``predict_mixed([N, D']) -> dict of [N]``."""

    def forward(
        self, layers: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Outputs ``[B]`` from ``[B, L, D]`` or ``[B, S, L, D]`` (+ ``mask`` ``[B, S]``)."""
        mixed = self.mix(layers)
        if mixed.dim() == 3 and mask is None:
            mixed = mixed.mean(dim=1)
        elif mixed.dim() == 3:  # the mean over segments with audio (zeros for a row with none)
            weights = mask.to(mixed.dtype).unsqueeze(-1)
            mixed = (mixed * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return self.predict_mixed(mixed)

    def segments(self, layers: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-segment outputs: ``[B, S, L, D]`` -> dict of ``[B, S]``."""
        batch, segs = layers.shape[:2]
        out = self.predict_mixed(self.mix(layers).reshape(batch * segs, -1))
        return {name: value.reshape(batch, segs) for name, value in out.items()}


class ReferenceHeads(_MixedHeads):
    """The reference ``apexMLP`` plus its fixed layer mix; state dict = the published one.

    Args:
        task: ``"popularity"`` (streams and likes) or ``"full"`` (all seven scores).
        shared: depth of the shared trunk: 2 (768-512-256) or 3 (768-512-384-256).
        mode: trained on songs or on 30 s segments (``"segment"``); inference is the same.
        input_dim, shared_dims, ...: the Hub ``config.json`` keys (``shared_dims`` overrides
            ``shared``); defaults are the reference's.
        num_layers: hidden states the encoder gives (13 for MERT-v1-95M).
        preference: add ``branch_preference``, the unbounded Bradley-Terry logit of refits.

    The mix weights are non-persistent buffers, set by :meth:`set_layer_mix`.
    """

    #: The reference pools MERT frames over the whole zero-padded 30 s segment.
    uses_padded_pooling = True

    def __init__(
        self,
        task: str = "full",
        shared: int = 2,
        mode: str = "song",
        *,
        input_dim: int = REFERENCE_DIM,
        shared_dims: tuple[int, ...] | None = None,
        branch_dims: tuple[int, ...] = (128, 64),
        dropout_shared: float = 0.3,
        dropout_branch: float = 0.1,
        layer_indices: tuple[int, ...] = REFERENCE_LAYERS,
        num_layers: int = 13,
        preference: bool = False,
    ) -> None:
        super().__init__()
        if task not in TASK_OUTPUTS:
            raise ValueError(f"task must be one of {sorted(TASK_OUTPUTS)}, got {task!r}")
        if shared_dims is None:
            if shared not in (2, 3):
                raise ValueError(f"shared must be 2 or 3, got {shared!r}")
            shared_dims = (512, 256) if shared == 2 else (512, 384, 256)
        shared_dims, branch_dims = tuple(shared_dims), tuple(branch_dims)
        if not shared_dims or min((*shared_dims, *branch_dims, input_dim)) < 1:
            raise ValueError(f"invalid widths: shared {shared_dims}, branches {branch_dims}")
        if mode not in ("song", "segment"):
            raise ValueError(f"mode must be 'song' or 'segment', got {mode!r}")
        picked = tuple(int(i) % num_layers for i in layer_indices)
        if not picked or any(not -num_layers <= int(i) < num_layers for i in layer_indices):
            raise ValueError(f"layer_indices {layer_indices} do not fit {num_layers} hidden states")
        self.task, self.shared_depth, self.mode = task, len(shared_dims), mode
        self.layer_indices, self.num_layers = picked, num_layers
        self.input_dim = self.dim = input_dim
        self.output_names: tuple[str, ...] = TASK_OUTPUTS[task]
        pairs = itertools.pairwise((input_dim, *shared_dims))
        self.shared = nn.Sequential(*(_block(a, b, dropout_shared) for a, b in pairs))
        self.has_preference = False
        self._branch_args = (shared_dims[-1], branch_dims, dropout_branch)
        for name in self.output_names:
            self.add_module(f"branch_{name}", _Branch(name, *self._branch_args))
        if preference:
            self.add_preference()
        mix = REFERENCE_LAYER_MIX
        # The seed-42 draw is known for 4 layers; other counts need the checkpoint's aggregator
        # (apex.published refuses to serve them without one).
        weight = torch.tensor(mix["weight"]) if len(picked) == 4 else torch.zeros(len(picked))
        self.register_buffer("mix_weight", weight, persistent=False)
        self.register_buffer("mix_bias", torch.tensor(mix["bias"][0]), persistent=False)
        self.mix_from = "seed-42 draw (REFERENCE_LAYER_MIX)"
        self.eval()

    @torch.no_grad()
    def set_layer_mix(self, weight: torch.Tensor, bias: torch.Tensor, mix_from: str) -> None:
        """Use a checkpoint's own ``Conv1d(L, 1, 1)`` mix: ``weight`` ``[1, L, 1]`` (any shape of
        L elements), ``bias`` ``[1]``, ``mix_from`` shown in the model info."""
        self.mix_weight.copy_(weight.reshape(-1).to(self.mix_weight))
        self.mix_bias.copy_(bias.reshape(()).to(self.mix_bias))
        self.mix_from = mix_from

    def add_preference(self) -> None:
        """Add a fresh ``branch_preference`` shaped like the score branches (a warm start)."""
        self.branch_preference = _Branch("preference", *self._branch_args)
        self.has_preference = True

    def mix(self, layers: torch.Tensor) -> torch.Tensor:
        """Mix layers: ``[..., L, D]`` -> ``[..., D]``, L all :attr:`num_layers` or those picked."""
        picked = len(self.layer_indices)
        if layers.shape[-1] != self.dim or layers.shape[-2] not in (picked, self.num_layers):
            raise ValueError(
                f"these reference heads need [..., {self.num_layers} or {picked}, "
                f"{self.dim}] hidden states, got {tuple(layers.shape)}; use the encoder "
                "they were trained on (MERT-v1-95M)"
            )
        if layers.shape[-2] != picked:
            layers = layers[..., list(self.layer_indices), :]
        weight = self.mix_weight.to(layers.dtype)
        return (layers * weight.unsqueeze(-1)).sum(dim=-2) + self.mix_bias.to(layers.dtype)

    def predict_mixed(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the MLP on mixed embeddings ``[B, 768]``; returns score tensors ``[B]``."""
        hidden = self.shared(x)
        out = {name: getattr(self, f"branch_{name}")(hidden) for name in self.output_names}
        if self.has_preference:
            out["preference"] = self.branch_preference(hidden)
        return out


# ---------------------------------------------------------------------------- our heads
@dataclass
class HeadsConfig:
    """Dimensions of :class:`ApexHeads`, saved as ``config.json``: L x D hidden states (13 x 768
    for MERT-v1-95M, 1 x 176 fallback), the shared MLP's widths (dropout after each), and the
    clamp of the log-variance (0-1 score scale) that keeps the Gaussian NLL finite early on."""

    num_layers: int = 13
    dim: int = REFERENCE_DIM
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    dropout: float = 0.1
    logvar_min: float = -12.0
    logvar_max: float = 2.0

    def __post_init__(self) -> None:
        self.hidden = [int(h) for h in self.hidden]
        if self.num_layers < 1 or self.dim < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"invalid heads dimensions: {asdict(self)}")


class ApexHeads(
    _MixedHeads,
    PyTorchModelHubMixin,
    library_name="apex-arena",
    repo_url="https://github.com/AMAAI-Lab/apex",
    tags=["audio", "music", "apex"],
):
    """Our heads: learned layer weights, masked segment mean, shared MLP, scores with uncertainty.

    Outputs (each ``[B]``): the seven :data:`SCORE_NAMES` (sigmoid-squashed like the reference);
    ``"<name>_std"``, the standard deviation in score units from a log-variance head on the 0-1
    scale; ``"preference"``, a Bradley-Terry logit (P(a over b) = sigmoid(pref_a - pref_b)).
    Buffers ``feature_mean`` / ``feature_scale`` ``[D]`` standardise the mixed embedding
    (:meth:`set_feature_stats`), which keeps the fallback's descriptors trainable.
    """

    #: Our encoders' ``Embedding.layers`` pools only the valid frames of each segment.
    uses_padded_pooling = False

    def __init__(self, config: HeadsConfig | dict | None = None) -> None:
        super().__init__()
        if isinstance(config, dict):  # from_pretrained passes config.json as a plain dict
            known = {f.name for f in fields(HeadsConfig)}
            config = HeadsConfig(**{k: v for k, v in config.items() if k in known})
        self.config = cfg = config or HeadsConfig()
        self.num_layers, self.dim = cfg.num_layers, cfg.dim
        self.output_names: tuple[str, ...] = SCORE_NAMES
        self.layer_logits = nn.Parameter(torch.zeros(cfg.num_layers))
        self.register_buffer("feature_mean", torch.zeros(cfg.dim))
        self.register_buffer("feature_scale", torch.ones(cfg.dim))
        trunk: list[nn.Module] = []
        width = cfg.dim
        for out in cfg.hidden:
            trunk += [nn.Linear(width, out), nn.LayerNorm(out), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = out
        self.trunk = nn.Sequential(*trunk)
        self.score_out = nn.Linear(width, len(SCORE_NAMES))
        self.logvar_out = nn.Linear(width, len(SCORE_NAMES))
        self.preference_out = nn.Linear(width, 1)
        self.eval()

    @torch.no_grad()
    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise mixed embeddings with ``mean``/``std`` ``[D]`` (std floored at 1e-6)."""
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_scale.copy_(std.to(self.feature_scale).clamp_min(1e-6))

    def mix(self, layers: torch.Tensor) -> torch.Tensor:
        """Softmax-weighted sum over layers: ``[..., L, D]`` -> ``[..., D]``."""
        if tuple(layers.shape[-2:]) != (self.num_layers, self.dim):
            raise ValueError(
                f"these heads take [..., {self.num_layers}, {self.dim}] hidden states, got "
                f"{tuple(layers.shape)}; score with the encoder the heads were trained on"
            )
        return (layers * torch.softmax(self.layer_logits, dim=0).unsqueeze(-1)).sum(dim=-2)

    def predict_mixed(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All outputs from mixed embeddings ``[B, D]``; see the class docstring."""
        hidden = self.trunk((x - self.feature_mean) / self.feature_scale)
        raw = self.score_out(hidden)
        logvar = self.logvar_out(hidden).clamp(self.config.logvar_min, self.config.logvar_max)
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(SCORE_NAMES):
            low, high = SCORE_RANGES[name]
            out[name] = _to_score_scale(raw[:, i], name)
            out[f"{name}_std"] = torch.exp(0.5 * logvar[:, i]) * (high - low)
        out["preference"] = self.preference_out(hidden).squeeze(1)
        return out


def logistic_preference(
    scores_a: dict[str, float], scores_b: dict[str, float], weights: dict[str, float]
) -> float:
    """P(a preferred to b) = sigmoid(sum_k w_k * (a_k - b_k)) over the scores both have."""
    shared = [k for k in weights if k in scores_a and k in scores_b]
    return float(expit(sum(weights[k] * (scores_a[k] - scores_b[k]) for k in shared)))


#: Per-point weights of :func:`logistic_preference` for heads without a preference output, set
#: by hand (not fitted): a 20-point gap on both engagement scores -> 73 %, a 1-point gap on all
#: five aesthetics -> 82 %.
LINK_WEIGHTS: dict[str, float] = {n: 0.025 if n in ENGAGEMENT else 0.3 for n in SCORE_NAMES}
