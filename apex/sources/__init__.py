"""Adapters for public data, read in the layout their publishers release.

:mod:`~apex.sources.music_arena` (battles and clips), :mod:`~apex.sources.engagement`
(Suno/Udio listings -> 0-100 targets), :mod:`~apex.sources.download` (polite, resumable audio
downloader), :mod:`~apex.sources.songeval` (SongEval ratings). Licences: :data:`LICENSES`.
"""

from __future__ import annotations

#: Licences as published (SongEval's: :data:`apex.sources.songeval.LICENSE`).
LICENSES: dict[str, str] = {
    "music-arena": "Music Arena dataset (music-arena/music-arena-dataset): see its dataset card; "
    "audio of some commercial systems is not released (empty audio_a/audio_b).",
    "suno-metadata": "Community metadata dumps such as nyuuzyou/suno: CC0-1.0 for the metadata; "
    "the audio stays under Suno's terms of service.",
}
