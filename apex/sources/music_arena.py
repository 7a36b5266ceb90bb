"""Music Arena's public release (battles and clips as DataFrames), and the demo in its layout:
``battle_data/<batch>/<battle>.json``, ``audio_files/<batch>/<clip>.mp3`` (named by ``audio_a``/
``audio_b``, "" when not released), ``metadata/<batch>.md``; batches ``01-2025JULAUG``, then
``NN-YYYYMON``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from apex.files import atomic_path, write_text_atomic
from apex.tasks import PREFERENCES

HUB_ID = "music-arena/music-arena-dataset"
#: Columns of :attr:`ArenaRelease.battles`, in order (release names plus what we derive).
BATTLE_COLUMNS: tuple[str, ...] = (
    "battle_uuid",
    "batch",
    "timestamp",
    "prompt",
    "is_instrumental",
    "user_pseudonym",
    *(f"{key}_{side}" for key in ("system", "audio", "clip", "has_audio") for side in "ab"),
    "preference",
    *(f"{key}_{side}" for key in ("total_listening_time", "duration") for side in "ab"),
)
_EASTERN = ZoneInfo("America/New_York")  # Music Arena assigns batches in US Eastern time
_FIRST_BATCH_END = datetime(2025, 8, 31, 23, 59, 59, tzinfo=_EASTERN)


class MusicArenaError(ValueError):
    """The folder is not in Music Arena's layout, or the Hub cannot be reached; says what to do."""


@dataclass
class ArenaRelease:
    """A Music Arena release read from disk (clips without audio on disk: ``has_audio_*`` False)."""

    root: Path  # the folder holding battle_data/ and audio_files/
    battles: pd.DataFrame  # one row per usable battle, columns BATTLE_COLUMNS
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) left out

    def clips(self) -> pd.DataFrame:
        """One row per distinct released clip (``file_name`` relative to the root)."""
        names = {
            "clip_{}": "clip_id",
            "audio_{}": "file_name",
            "system_{}": "system",
            "prompt": "prompt",
            "is_instrumental": "is_instrumental",
            "duration_{}": "duration_s",
            "batch": "batch",
            "has_audio_{}": "has_audio",
        }
        sides = [
            self.battles[[k.format(side) for k in names]].set_axis(list(names.values()), axis=1)
            for side in ("a", "b")
        ]
        clips = pd.concat(sides, ignore_index=True)
        clips = clips[clips["file_name"] != ""]
        return clips.drop_duplicates("file_name").reset_index(drop=True)


def batch_name(when: datetime) -> str:
    """Music Arena's batch folder for a vote at ``when``: ``01-2025JULAUG``, ``02-2025SEP``, ..."""
    local = when.astimezone(_EASTERN)
    if local <= _FIRST_BATCH_END:
        return "01-2025JULAUG"
    number = (local.year - 2025) * 12 + (local.month - 9) + 2
    return f"{number:02d}-{local.year}{local.strftime('%b').upper()}"


def read_release(root: str | Path) -> ArenaRelease:
    """Read every ``battle_data/*/*.json`` under ``root``; :class:`MusicArenaError` when ``root``
    has no ``battle_data`` folder or no battle file at all."""
    root = Path(root).expanduser().resolve()
    folder = root / "battle_data"
    if not folder.is_dir():
        raise MusicArenaError(
            f"{root} is not in Music Arena's layout (no battle_data/ folder); download "
            f"{HUB_ID} or point at the folder that holds battle_data/ and audio_files/."
        )
    files = sorted(folder.glob("*/*.json"))
    if not files:
        raise MusicArenaError(f"{folder} holds no battle_data/<batch>/*.json files.")
    rows, skipped = [], []
    for path in files:
        name = str(path.relative_to(root))
        try:
            rows.append(_parse_battle(json.loads(path.read_text(encoding="utf-8")), path, root))
        except (ValueError, OSError) as exc:  # JSONDecodeError is a ValueError
            skipped.append((name, str(exc)))
    frame = pd.DataFrame(rows, columns=list(BATTLE_COLUMNS))
    duplicated = frame["battle_uuid"].duplicated()
    skipped += [
        (u, "battle_uuid appears twice; kept the first") for u in frame[duplicated].battle_uuid
    ]
    frame = frame[~duplicated].sort_values("timestamp", kind="stable").reset_index(drop=True)
    return ArenaRelease(root=root, battles=frame, skipped=skipped)


def _flag(value: Any) -> bool:
    """``is_instrumental``: a bool, a ``"true"``/``"false"`` string or null (False, as Music
    Arena's leaderboard takes it)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _timestamp(record: dict[str, Any]) -> float:
    stamp = _number(record.get("timestamp"))
    if np.isnan(stamp) and record.get("date"):
        stamp = datetime.fromisoformat(str(record["date"])).timestamp()
    if np.isnan(stamp):
        raise ValueError("no timestamp or date")
    return stamp


def _parse_battle(record: Any, path: Path, root: Path) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    uuid = str(record.get("battle_uuid") or "").strip()
    if not uuid:
        raise ValueError("no battle_uuid")
    systems = [str(record.get(f"system_{s}") or "").strip() for s in "ab"]
    if not all(systems):
        raise ValueError("system_a or system_b is missing")
    preference = record.get("preference")
    if preference not in PREFERENCES:
        raise ValueError(f"preference {preference!r} is not one of {', '.join(PREFERENCES)}")
    row: dict[str, Any] = {
        "battle_uuid": uuid,
        "batch": path.parent.name,
        "timestamp": _timestamp(record),
        "prompt": str(record.get("prompt") or ""),
        "is_instrumental": _flag(record.get("is_instrumental")),
        "user_pseudonym": str(record.get("user_pseudonym") or ""),
        "system_a": systems[0],
        "system_b": systems[1],
        "preference": preference,
    }
    for side in "ab":
        audio = str(record.get(f"audio_{side}") or "")
        row[f"audio_{side}"] = audio
        row[f"clip_{side}"] = Path(audio).stem if audio else ""
        row[f"has_audio_{side}"] = bool(audio) and (root / audio).is_file()
        row[f"total_listening_time_{side}"] = _number(record.get(f"total_listening_time_{side}"))
        row[f"duration_{side}"] = _number(record.get(f"duration_{side}"))
    return row


def resolve(spec: str | Path, *, cache_dir: str | Path, batches: tuple[str, ...] = ()) -> Path:
    """``spec`` as a local folder: itself, or ``"music-arena"`` (the official dataset) or a Hub
    dataset id in its layout downloaded into ``cache_dir`` (only ``batches``, empty: all).
    :class:`MusicArenaError`: not a folder nor a dataset id, or the Hub is unreachable (offline)."""
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        return path
    repo = HUB_ID if str(spec) == "music-arena" else str(spec)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise MusicArenaError(
            f"{spec!r} is neither a folder nor a Hub dataset id; pass the folder that holds "
            "battle_data/ and audio_files/, or 'music-arena'."
        )
    from huggingface_hub import snapshot_download

    from apex.hub_files import hub_errors

    folders = [f"{kind}/{b}/*" for b in batches for kind in ("battle_data", "audio_files")]
    try:
        return Path(
            snapshot_download(
                repo,
                repo_type="dataset",
                cache_dir=Path(cache_dir),
                allow_patterns=folders or ["battle_data/*", "audio_files/*", "*.md"],
            )
        )
    except hub_errors() as exc:  # offline, gated, wrong id: one piece of advice for all
        raise MusicArenaError(
            f"could not download {repo!r} from the Hub ({type(exc).__name__}: {exc}). The Hub may "
            "be unreachable (offline?) or the id wrong; download it elsewhere with "
            f"`huggingface-cli download {repo} --repo-type dataset --local-dir DIR` and pass DIR."
        ) from exc


def _encode(audio: Path, dest: Path, audio_format: str) -> None:
    import soundfile as sf

    with atomic_path(dest) as tmp:
        if audio_format == "copy":
            tmp.write_bytes(audio.read_bytes())
        else:
            samples, rate = sf.read(audio, dtype="float32", always_2d=True)
            sf.write(tmp, samples, rate, format="MP3")


def export_votes(
    corpus_dir: str | Path, votes: pd.DataFrame, out_dir: str | Path, *, audio_format: str = "mp3"
) -> Path:
    """Write a demo corpus's clips and :func:`apex.demo.simulate_votes` rows in Music Arena's
    layout (replacing same-named files); returns ``out_dir``.

    ``audio_format``: ``"mp3"`` (re-encoded, as the release ships) or ``"copy"`` (the corpus's
    bytes). Every battle file carries ``"apex_demo": true`` (and ``README.md`` says so).
    """
    from apex.demo import load_metadata

    if audio_format not in ("mp3", "copy"):
        raise ValueError(f"audio_format must be 'mp3' or 'copy', got {audio_format!r}")
    corpus, out = Path(corpus_dir), Path(out_dir)
    meta = load_metadata(corpus).set_index("clip_id")
    written: set[str] = set()
    for vote in votes.to_dict("records"):
        when = pd.Timestamp(vote["timestamp"]).to_pydatetime()
        batch = batch_name(when if when.tzinfo else when.replace(tzinfo=UTC))
        record: dict[str, Any] = {
            "battle_uuid": vote["battle_uuid"],
            "date": when.astimezone(_EASTERN).isoformat(),
            "timestamp": when.timestamp(),
            "prompt": vote["prompt"],
            "is_instrumental": bool(vote["is_instrumental"]),
            "is_prebaked": False,
            "user_pseudonym": vote.get("voter", ""),
            "preference": vote["preference"],
            "feedback": "",
            "apex_demo": True,
        }
        for side in "ab":
            clip = meta.loc[vote[f"clip_{side}"]]
            audio = corpus / clip["file_name"]
            suffix = ".mp3" if audio_format == "mp3" else audio.suffix
            rel = f"audio_files/{batch}/{vote[f'clip_{side}']}{suffix}"
            if rel not in written:
                _encode(audio, out / rel, audio_format)
                written.add(rel)
            duration = float(clip["duration_s"])
            record |= {
                f"system_{side}": vote[f"system_{side}"],
                f"audio_{side}": rel,
                f"duration_{side}": duration,
                f"sample_rate_{side}": int(clip["sample_rate"]),
                # simulated listeners hear each clip to the end
                f"total_listening_time_{side}": duration,
            }
        # atomic: a crash never leaves half a battle file that a reader would skip
        path = out / "battle_data" / batch / f"{vote['battle_uuid']}.json"
        write_text_atomic(path, json.dumps(record, ensure_ascii=False))
    (out / "README.md").write_text(
        "# DEMO data in Music Arena's layout\n\nSynthetic demo clips and simulated votes written "
        "by `apex.sources.music_arena.export_votes`; not real listeners, not real systems.\n",
        encoding="utf-8",
    )
    return out
