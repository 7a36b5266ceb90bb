"""The arena's clip pool: :func:`load_pool`, :class:`ClipPool` (``clip_pool``), header checks
(``check``), where clips come from (``sources``), the background scoring queue (``scoring``)."""

from __future__ import annotations

from annotation.pool.check import Clip
from annotation.pool.clip_pool import ClipPool
from annotation.pool.scoring import ScorerLike, model_key
from annotation.pool.sources import PoolError, resolve_pool
from apex.settings import Settings

__all__ = ["Clip", "ClipPool", "PoolError", "ScorerLike", "load_pool", "model_key"]


def load_pool(settings: Settings) -> ClipPool:
    """The pool ``settings.pool`` names (``auto``, ``demo``, ``music-arena[:<batch>,...]``, a
    folder or a Hub dataset id), unscored; PoolError as
    :func:`~annotation.pool.sources.resolve_pool`, or when no clip is usable."""
    directory, description = resolve_pool(settings)
    arena = (directory / "battle_data").is_dir()
    build = ClipPool.from_music_arena if arena else ClipPool.from_audiofolder
    return build(
        directory,
        cache_dir=settings.cache_dir,
        max_seconds=settings.max_audio_s,
        description=description,
    )
