"""Adapters for public data, read in the layout their publishers release.

:mod:`~apex.sources.music_arena` (battles and clips), :mod:`~apex.sources.engagement`
(Suno/Udio listings -> 0-100 targets), :mod:`~apex.sources.download` (polite, resumable audio
downloader), :mod:`~apex.sources.songeval` (SongEval ratings). Licences: :data:`LICENSES`.
"""

from __future__ import annotations

#: Licence of each public data set (and of the MERT weights), as published.
LICENSES: dict[str, str] = {
    "music-arena": "Music Arena dataset (music-arena/music-arena-dataset): see its dataset card; "
    "audio of some commercial systems is not released (empty audio_a/audio_b).",
    "suno-metadata": "Community metadata dumps such as nyuuzyou/suno: CC0-1.0 for the metadata; "
    "the audio stays under Suno's terms of service.",
    "songeval": "SongEval (ASLP-lab/SongEval): CC BY-NC-SA 4.0 -- non-commercial use only.",
    "mert": "MERT-v1-95M (m-a-p/MERT-v1-95M) weights: CC BY-NC 4.0 -- non-commercial use only.",
}

__all__ = ["LICENSES"]
