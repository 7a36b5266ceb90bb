"""Which heads and encoder answer: :func:`load_scorer` (the champion, the published APEX, the demo).

It resolves a model spec (``auto``, ``demo``, a directory, a ``.pt``, a Hub id) and an encoder
spec into a :class:`~apex.scorer.Scorer`, with a notice for every fallback it took. Every Hub
lookup reads the local cache first and probes the Hub only on a miss (:mod:`apex.hub_files`).
"""

from __future__ import annotations

from pathlib import Path

from apex.checkpoints import PUBLISHED_REPO, CheckpointError, load_model
from apex.encoders.base import Encoder, EncoderUnavailable
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


def _champion_or_auto(settings: Settings) -> tuple[str, list[str]]:
    """The registry's champion directory when it loads, else ``"auto"``, with notices (what
    restoring an empty registry from ``APEX_MODEL_REPO`` did; a champion that cannot load)."""
    from apex.training.registry import restore_champion

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
        model: ``"auto"``: the model registry's champion with its encoder (restored from
            ``settings.model_repo`` when the registry is empty), else the published heads
            (``amaai-lab/apex`` on MERT-v1-95M) when cached or downloadable, else the offline
            demo model (every result says so). Or a pinned model: ``"demo"``, a model
            directory, a reference ``.pt`` file or a Hub repo id.
        encoder: ``None``/``"auto"`` (the heads' own), ``"fallback"``, a local HuBERT-shaped
            checkpoint directory, or a Hub id.
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: ``"fast"`` (bf16 where supported) or ``"reference"`` (fp32).
        settings: default :meth:`Settings.from_env`.

    Raises:
        CheckpointError: an explicitly named model cannot be loaded.
        EncoderUnavailable: an explicitly named encoder cannot be loaded.
        ValueError: the heads and the encoder do not fit together.
    """
    settings = settings or Settings.from_env()
    device = None if device in (None, "auto") else device
    encoder = None if encoder in (None, "auto") else encoder
    notices: list[str] = []
    if model == "auto":
        model, notice = _champion_or_auto(settings)
        notices += notice
    if model == "auto":
        try:
            if encoder == "fallback":
                raise EncoderUnavailable("the published heads need MERT, not the fallback encoder")
            from apex.published import load_published

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

            heads, info = load_model(ensure_demo_model(settings))
        else:
            heads, info = load_model(model)
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
