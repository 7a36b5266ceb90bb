"""Adapters for public data, read in the layout their publishers release; their licences as
published (SongEval's: :data:`apex.sources.songeval.LICENSE`)."""

from __future__ import annotations

LICENSES: dict[str, str] = {
    "music-arena": "Music Arena dataset (music-arena/music-arena-dataset): see its dataset card; "
    "audio of some commercial systems is not released (empty audio_a/audio_b).",
    "suno-metadata": "Community metadata dumps such as nyuuzyou/suno: CC0-1.0 for the metadata; "
    "the audio stays under Suno's terms of service.",
}
