"""Where the arena's clip pool comes from: the ``APEX_POOL`` setting, and :func:`pool_identity`,
the source every vote records."""

from __future__ import annotations

import json
import re
from pathlib import Path

from apex.settings import Settings

_HUB_CACHE = "hub-datasets"
# huggingface_hub's cache layout: <cache>/datasets--<owner>--<name>/snapshots/<revision>
_SNAPSHOT = re.compile(r"datasets--(?P<owner>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<rev>[^/]+)")
#: How the UI names the demo pool.
DEMO_DESCRIPTION = (
    "The synthetic demo corpus (generated clips of made-up demo systems, not real AI music)."
)


class PoolError(ValueError):
    """The pool cannot be built or was asked for a clip it lacks; the message says what was wrong
    and what to do."""


def resolve_pool(settings: Settings) -> tuple[Path, str]:
    """``(local folder, sentence for the UI)`` of ``settings.pool``, downloaded or built first;
    ``auto`` is Music Arena's latest batch when the Hub has it, else the demo corpus (saying why).
    PoolError when the spec names no pool or its download failed (never for ``auto``)."""
    from apex.checkpoints import hub_reachable
    from apex.demo import ensure_demo_corpus

    spec = settings.pool
    if spec == "demo":
        return Path(ensure_demo_corpus(settings)), DEMO_DESCRIPTION
    if spec == "music-arena" or spec.startswith("music-arena:"):
        return _music_arena_release(spec, settings), f"Music Arena's public release ({spec})"
    if spec != "auto" and Path(spec).expanduser().is_dir():
        return Path(spec).expanduser(), f"clips from {spec}"
    if re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
        return _hub_dataset(spec, settings), f"clips from {spec}"
    if spec != "auto":
        raise PoolError(
            f"APEX_POOL={spec!r} is neither `auto`, `demo`, `music-arena`, an existing folder, "
            "nor a Hub dataset id (owner/name); fix the path or use `demo`."
        )
    if not hub_reachable():
        reason = "the Hugging Face Hub is not reachable from here"
    else:
        try:
            batch = _latest_batch()
            folder = _music_arena_release(f"music-arena:{batch}", settings)
            return folder, f"Music Arena's public release, batch {batch} (real AI-generated music)"
        except PoolError as exc:
            reason = str(exc)
    folder = Path(ensure_demo_corpus(settings))
    return folder, f"{DEMO_DESCRIPTION} Music Arena's release could not be used: {reason}."


def pool_identity(folder: str | Path, *, batches: tuple[str, ...] | None = None) -> str:
    """Where the pool in ``folder`` can be fetched again (a vote's ``pool``): ``demo:<seed>``,
    ``<owner>/<name>@<revision>`` (a Hub dataset snapshot) or ``local:<folder name>`` (a path may
    be private); for Music Arena's layout followed by ``:<batch>[,<batch>...]`` of ``batches``
    (an imported vote's own), default every ``battle_data/<batch>`` on disk."""
    root = Path(folder).expanduser().resolve()
    info = root / "corpus.json"
    if info.is_file() and (root / "metadata.csv").is_file():
        return f"demo:{json.loads(info.read_text(encoding='utf-8'))['seed']}"
    hub = _SNAPSHOT.search(root.as_posix())
    name = f"{hub['owner']}/{hub['name']}@{hub['rev']}" if hub else f"local:{root.name}"
    if batches is None and (root / "battle_data").is_dir():
        batches = tuple(sorted(p.name for p in (root / "battle_data").iterdir() if p.is_dir()))
    return f"{name}:{','.join(batches)}" if batches else name


def _latest_batch() -> str:
    """The newest ``battle_data/<batch>`` (``NN-YYYYMON``, highest ``NN``) of Music Arena's Hub
    dataset; PoolError when the Hub cannot be asked or lists none."""
    from huggingface_hub import HfApi

    from apex.hub_files import hub_errors
    from apex.sources.music_arena import HUB_ID

    try:
        entries = HfApi().list_repo_tree(HUB_ID, path_in_repo="battle_data", repo_type="dataset")
        names = [Path(entry.path).name for entry in entries]
    except hub_errors() as exc:
        raise PoolError(
            f"could not list the batches of {HUB_ID} ({type(exc).__name__}: {exc}); set "
            "APEX_POOL=music-arena:<batch> or a local copy of the release"
        ) from exc
    batches = [n for n in names if re.fullmatch(r"\d+-\d{4}[A-Z]+", n)]
    if not batches:
        raise PoolError(f"{HUB_ID} lists no battle_data/<batch> folder; its layout has changed")
    return max(batches, key=lambda name: int(name.split("-")[0]))


def _music_arena_release(spec: str, settings: Settings) -> Path:
    """``music-arena`` or ``music-arena:<batch>[,<batch>...]`` from the Hub (cached)."""
    from apex.sources.music_arena import MusicArenaError, resolve

    batches = tuple(b for b in spec.partition(":")[2].split(",") if b)
    try:
        return resolve("music-arena", cache_dir=settings.cache_dir / _HUB_CACHE, batches=batches)
    except MusicArenaError as exc:
        raise PoolError(
            f"APEX_POOL={spec}: {exc} Or set APEX_POOL=demo, or to a local copy of the release."
        ) from exc


def _hub_dataset(repo_id: str, settings: Settings) -> Path:
    from huggingface_hub import snapshot_download

    from apex.hub_files import hub_errors

    cache_dir = settings.cache_dir / _HUB_CACHE
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", cache_dir=cache_dir))
    except hub_errors() as exc:
        raise PoolError(
            f"could not download the Hub dataset {repo_id!r} ({type(exc).__name__}: {exc}). "
            "The Hub may be unreachable (offline?) or the id wrong; set APEX_POOL=demo or a local "
            "folder in the audiofolder layout."
        ) from exc
