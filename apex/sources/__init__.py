"""Adapters for public data: Music Arena battles, Suno/Udio engagement listings, SongEval ratings.

Each adapter reads a source in the exact layout its publishers release and turns it into the
project's own tables (DataFrames, manifests for ``apex embed``, vote records). Importing this
package is cheap: every submodule is imported only when used.

- :mod:`apex.sources.music_arena` -- ``battle_data/<batch>/*.json`` + ``audio_files/<batch>/*``.
- :mod:`apex.sources.engagement` -- column maps per listing source, counts -> 0-100 targets.
- :mod:`apex.sources.download` -- polite, resumable, checksummed audio downloader.
- :mod:`apex.sources.songeval` -- SongEval ratings as aesthetic targets, test-set metrics.

Licences differ per source and are stated where each is read (:data:`LICENSES`).
"""

from __future__ import annotations

#: Licence of each public source (and of the MERT weights the embeddings come from), as published.
LICENSES: dict[str, str] = {
    "music-arena": "Music Arena dataset (music-arena/music-arena-dataset): see its dataset card; "
    "audio of some commercial systems is not released (empty audio_a/audio_b).",
    "suno-metadata": "Community metadata dumps such as nyuuzyou/suno: CC0-1.0 for the metadata; "
    "the audio stays under Suno's terms of service.",
    "songeval": "SongEval (ASLP-lab/SongEval): CC BY-NC-SA 4.0 -- non-commercial use only.",
    "mert": "MERT-v1-95M (m-a-p/MERT-v1-95M) weights: CC BY-NC 4.0 -- non-commercial use only.",
}

__all__ = ["LICENSES"]
