"""Which heads and encoder answer: :func:`load_scorer` (the champion, the published APEX, the demo),
with a notice for every fallback it took."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from apex.checkpoints import CheckpointError, ModelInfo, load_model
from apex.encoders.base import Encoder, EncoderUnavailable
from apex.published import PUBLISHED_REPO, load_published
from apex.scorer import Scorer
from apex.settings import Settings
from apex.training.registry import champion_of, registry_for


def _make_encoder(spec: str, precision: str, device: str | None, settings: Settings) -> Encoder:
    from apex.encoders import load_encoder

    return load_encoder(
        spec,
        precision=precision,
        device=device,
        trust_remote_code=settings.trust_remote_code,
        cache_dir=settings.cache_dir / "embeddings",
    )


def _champion_or_auto(settings: Settings) -> tuple[str, tuple[nn.Module, ModelInfo] | None, list]:
    """The registry's champion and its ``(heads, info)``, else ``("auto", None)``; and notices
    (what restoring an empty registry from ``APEX_MODEL_REPO`` did; a champion that cannot load)."""
    from apex.training.registry import restore_champion

    note = restore_champion(settings)
    notices = [note] if note else []
    champion = champion_of(settings)
    if champion is None:
        return "auto", None, notices
    try:
        return str(champion), load_model(champion), notices
    except CheckpointError as err:
        notices.append(f"The registry's champion {champion.name} cannot be loaded ({err}).")
        return "auto", None, notices


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
        model: ``"auto"``: the registry's champion with its encoder (restored from
            ``settings.model_repo`` when the registry is empty), else the published heads when
            cached or downloadable, else the offline demo model (every result says so). Or a
            pinned model: ``"demo"``, a model directory, a ``.pt`` file or a Hub repo id.
        encoder, device, precision: as ``APEX_ENCODER``, ``APEX_DEVICE``, ``APEX_PRECISION``.
        settings: default :meth:`Settings.from_env`.

    Raises:
        CheckpointError, EncoderUnavailable: an explicitly named model or encoder cannot load.
        ValueError: the heads and the encoder do not fit together.
    """
    settings = settings or Settings.from_env()
    device = None if device in (None, "auto") else device
    encoder = None if encoder in (None, "auto") else encoder
    notices: list[str] = []
    loaded = None
    if model == "auto":
        model, loaded, notices = _champion_or_auto(settings)
    if model == "auto":
        try:
            if encoder == "fallback":
                raise EncoderUnavailable("the published heads need MERT, not the fallback encoder")
            published = load_published(PUBLISHED_REPO)
            heads, info = published.heads, published.info
            enc = _make_encoder(encoder or published.encoder_spec, precision, device, settings)
        except (CheckpointError, EncoderUnavailable) as err:
            notices.append(
                f"The published APEX model is not available here, so the offline demo model "
                f"answers. Reason: {err}"
            )
            model, encoder = "demo", None
    if model != "auto":
        if model == "demo":
            from apex.demo.model import ensure_demo_model

            loaded = load_model(ensure_demo_model(settings))
        heads, info = loaded or load_model(model)
        if info.kind != "published" and Path(model).parent == registry_for(settings).root:
            encoder = None  # a champion serves with the encoder it was trained on
        spec = encoder or str(info.metadata.get("encoder_spec", info.encoder_id))
        enc = _make_encoder(spec, precision, device, settings)
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
