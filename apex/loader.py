"""Which heads and encoder answer: ``load_scorer`` (the champion, the published APEX, the demo).

:func:`load_scorer` resolves a model spec (``auto``, ``demo``, a directory, a ``.pt``, a Hub id)
and an encoder spec into a :class:`~apex.scorer.Scorer`, with a notice for every fallback it
took (no published model reachable, the fallback encoder answering). The scorer runs them.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from apex.checkpoints import PUBLISHED_REPO, CheckpointError, ModelInfo, load_model
from apex.encoders.base import Encoder, EncoderUnavailable
from apex.scorer import Scorer
from apex.settings import Settings
from apex.training.registry import champion_of, registry_for


def _make_encoder(
    spec: str, precision: str, device: str | None, settings: Settings, local_only: bool
) -> Encoder:
    from apex.encoders import load_encoder

    return load_encoder(
        spec,
        precision=precision,
        device=device,
        trust_remote_code=settings.trust_remote_code,
        cache_dir=settings.cache_dir / "embeddings",
        local_files_only=local_only,
    )


def _published(
    encoder: str | None, precision: str, device: str | None, settings: Settings, local_only: bool
) -> tuple[nn.Module, ModelInfo, Encoder]:
    """The published heads (local cache first, the Hub only if not cached) and their MERT."""
    from apex.published import load_published

    published = load_published(PUBLISHED_REPO, local_files_only=local_only)
    spec = encoder or published.encoder_spec
    enc = _make_encoder(spec, precision, device, settings, local_only)
    return published.heads, published.info, enc


def _resolve_model(model: str, settings: Settings, local_only: bool) -> tuple[nn.Module, ModelInfo]:
    if model == "demo":
        from apex.demo.model import ensure_demo_model

        return load_model(ensure_demo_model(settings))
    return load_model(model, local_files_only=local_only)


def _champion_or_auto(settings: Settings) -> tuple[str, list[str]]:
    """``model="auto"``: the registry's champion directory when there is a loadable one, else
    ``"auto"`` (published, then demo), with a notice when a champion exists but cannot load.

    An empty registry first restores the champion from ``APEX_MODEL_REPO``
    (:func:`~apex.training.model_repo.restore_champion`); what that did becomes a notice."""
    from apex.training.model_repo import restore_champion

    note = restore_champion(settings)
    notices = [note] if note else []
    champion = champion_of(settings)
    if champion is None:
        return "auto", notices
    try:
        load_model(champion)
    except CheckpointError as err:
        return "auto", [
            *notices,
            f"The registry's champion {champion.name} cannot be loaded ({err}).",
        ]
    return str(champion), notices


def load_scorer(
    model: str = "auto",
    encoder: str | None = None,
    device: str | None = None,
    precision: str = "fast",
    *,
    settings: Settings | None = None,
) -> Scorer:
    """Build a :class:`Scorer`.

    Args:
        model: ``"auto"`` (the model registry's champion, ``settings.models_dir/refits``, with
            the encoder it was trained on, when there is one, restored first from
            ``settings.model_repo`` when the registry is empty; else the published APEX heads,
            ``amaai-lab/apex``, on MERT-v1-95M when both are in the local Hugging Face cache or
            downloadable; otherwise the offline demo model, and every result says so), or a
            pinned model: ``"demo"``, a local model directory, a reference ``.pt`` file, or a
            Hub repo id.
        encoder: ``None``/``"auto"`` for the encoder the heads were trained on, ``"fallback"``, a
            local HuBERT-shaped checkpoint directory, or a Hub id.
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: encoder precision, ``"fast"`` (bf16 where supported) or ``"reference"`` (fp32).
        settings: data directories, cache and limits (default: :meth:`Settings.from_env`).

    Raises:
        CheckpointError: an explicitly named model cannot be loaded.
        EncoderUnavailable: an explicitly named encoder cannot be loaded.
        ValueError: the heads and the encoder do not fit together.
    """
    settings = settings or Settings.from_env()
    device = None if device in (None, "auto") else device
    encoder = None if encoder in (None, "auto") else encoder
    notices: list[str] = []
    # Every Hub lookup reads the local cache first (preload_from_hub) and probes the Hub only
    # on a cache miss (apex.hub_files), so a preloaded start-up makes no network round trip.
    local_only = False
    if model == "auto":
        model, notice = _champion_or_auto(settings)
        notices += notice
    if model == "auto":
        try:
            if encoder == "fallback":
                raise EncoderUnavailable("the published heads need MERT, not the fallback encoder")
            heads, info, enc = _published(encoder, precision, device, settings, local_only)
        except (CheckpointError, EncoderUnavailable) as err:
            notices.append(
                f"The published APEX model is not available here, so the offline demo model "
                f"answers. Reason: {err}"
            )
            model, encoder = "demo", None
    if model != "auto":
        heads, info = _resolve_model(model, settings, local_only)
        if info.kind != "published" and Path(model).parent == registry_for(settings).root:
            encoder = None  # a champion serves with the encoder it was trained on
        spec = encoder or str(info.metadata.get("encoder_spec", info.encoder_id))
        enc = _make_encoder(spec, precision, device, settings, local_only)
    if getattr(enc, "is_fallback", False):
        notices.append(
            "Fallback encoder: embeddings are built-in audio descriptors, not MERT; only heads "
            "trained on them (the demo model) give meaningful scores."
        )
    return Scorer(
        heads,
        info,
        enc,
        device=device,
        max_audio_s=settings.max_audio_s,
        notices=notices,
        max_batch=settings.score_concurrency,
    )
