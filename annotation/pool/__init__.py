"""The arena's clip pool: :func:`load_pool`, :class:`ClipPool` (``clip_pool``), header checks
(``check``), where clips come from (``sources``), the background scoring queue (``scoring``).
"""

from __future__ import annotations

from annotation.pool.check import Clip
from annotation.pool.clip_pool import ClipPool, PoolOptions
from annotation.pool.scoring import ScorerLike, model_key
from annotation.pool.sources import PoolError, pool_source
from apex.settings import Settings

__all__ = ["Clip", "ClipPool", "PoolError", "PoolOptions", "ScorerLike", "load_pool", "model_key"]


def load_pool(settings: Settings, scorer: ScorerLike | None = None) -> ClipPool:
    """The pool ``settings.pool`` names, validated (cheaply) but not scored unless ``scorer``.

    ``auto`` (the default): the latest batch of Music Arena's public release when the Hub is
    reachable, else the demo corpus; ``demo``; ``music-arena`` (the whole release) or
    ``music-arena:<batch>[,<batch>...]`` (only those monthly batches, e.g.
    ``music-arena:02-2025SEP``); a local folder (audiofolder, or Music Arena's layout when it
    holds ``battle_data/``); or a Hub dataset id in either layout. Clips longer than
    ``settings.max_audio_s`` are skipped with the reason. :attr:`ClipPool.description` says
    which source it is (and why ``auto`` fell back to the demo).

    Raises:
        PoolError: the folder does not exist, or a Hub dataset cannot be downloaded (offline);
            the message says which setting to change.
    """
    directory, description = pool_source(settings)
    build = (
        ClipPool.from_music_arena
        if (directory / "battle_data").is_dir()
        else ClipPool.from_audiofolder
    )
    return build(
        directory,
        scorer,
        cache_dir=settings.cache_dir,
        max_seconds=settings.max_audio_s,
        description=description,
    )
