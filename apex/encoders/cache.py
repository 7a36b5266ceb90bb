"""On-disk embedding cache: the same audio is never encoded twice by the same encoder settings.

Entries: ``<2 hex>/<sha256(content hash | encoder id | settings key)>.safetensors``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from apex.audio import Audio
from apex.encoders.base import Embedding, Encoder
from apex.files import atomic_path, sha256_text

logger = logging.getLogger(__name__)

_VERSION = "1"  # bump when the file layout changes; old entries are then simply not found


class EmbeddingCache:
    """A directory (``root``, created on first write) of cached :class:`Embedding` files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(self, content_hash: str, encoder_id: str, settings_key: str) -> str:
        """The entry name for a clip under one encoder configuration (64 hex chars)."""
        return sha256_text("|".join((_VERSION, content_hash, encoder_id, settings_key)))

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> Embedding | None:
        """The cached embedding, or None if absent or unreadable (then it is recomputed)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        path = self.path(key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                encoder_id = (handle.metadata() or {}).get("encoder_id", "")
            tensors = load_file(str(path))
            return Embedding(encoder_id=encoder_id, **tensors)
        # Damaged, half-written, or written by an older Embedding layout (TypeError, KeyError).
        except (SafetensorError, OSError, TypeError, KeyError) as err:
            logger.warning("unusable embedding cache entry %s (%s); recomputing", path, err)
            return None

    def put(self, key: str, embedding: Embedding) -> None:
        """Store ``embedding`` under ``key`` atomically."""
        from safetensors.torch import save_file

        names = ("layers", "layers_padded", "seconds")
        tensors = {k: getattr(embedding, k).detach().cpu().contiguous() for k in names}
        with atomic_path(self.path(key), fsync=False) as tmp:  # a cache: a lost entry is recomputed
            save_file(tensors, str(tmp), metadata={"encoder_id": embedding.encoder_id})


class CachedEncoder(Encoder):
    """Wraps an :class:`Encoder` (called only on a miss) with an :class:`EmbeddingCache`;
    ``hits`` and ``misses`` count embeddings served and computed."""

    def __init__(self, encoder: Encoder, cache: EmbeddingCache) -> None:
        self.encoder = encoder
        self.cache = cache
        self.hits = 0
        self.misses = 0
        for name in ("encoder_id", "sample_rate", "num_layers", "dim", "segment_seconds"):
            setattr(self, name, getattr(encoder, name))
        self.is_fallback = encoder.is_fallback
        self.revision = getattr(encoder, "revision", None)

    def settings_key(self) -> str:
        """The wrapped encoder's settings key."""
        return self.encoder.settings_key()

    def encode_batch(self, audios: Sequence[Audio]) -> list[Embedding]:
        """Cached embeddings where present; the misses (each distinct clip once) go to the
        wrapped encoder as one batch."""
        for audio in audios:
            self._check_rate(audio)
        settings = self.settings_key()
        keys = [self.cache.key(a.content_hash, self.encoder_id, settings) for a in audios]
        found: dict[str, Embedding | None] = {key: self.cache.get(key) for key in keys}
        todo = {key: audio for key, audio in zip(keys, audios, strict=True) if found[key] is None}
        self.hits += len(audios) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.encoder.encode_batch(list(todo.values()))
            for key, embedding in zip(todo, fresh, strict=True):
                self.cache.put(key, embedding)
                found[key] = embedding
        return [found[key] for key in keys]
