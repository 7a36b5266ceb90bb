"""``apex data``: fetch and convert public sources into what ``apex embed`` and the arena read::

apex data arena-demo --out var/arena-demo --votes 2000       # offline stand-in, MA layout
apex data music-arena --batch 02-2025SEP                     # Hub release into the cache
apex data engagement suno.jsonl --out var/suno --limit 5000  # listing -> audio + manifest
apex data songeval --data ~/SongEval --manifest var/songeval.jsonl [--evaluate auto]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from apex.cli import EXIT_OK, dataclass_flags, from_args, guarded
from apex.sources.download import DownloadConfig
from apex.tasks import ENGAGEMENT_POWER


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``apex data`` and its subcommands to the ``apex`` parser."""
    data = subparsers.add_parser("data", help="fetch/convert public data (Music Arena, Suno...)")
    sub = data.add_subparsers(dest="subcommand", metavar="SOURCE", required=True)

    demo = sub.add_parser("arena-demo", help="demo clips + simulated votes in Music Arena's layout")
    demo.add_argument("--out", type=Path, required=True)
    demo.add_argument("--votes", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--audio", choices=("mp3", "copy"), default="mp3")
    demo.set_defaults(func=guarded(cmd_arena_demo))

    arena = sub.add_parser("music-arena", help="download Music Arena's release and summarise it")
    arena.add_argument("--data", default="music-arena", help="folder, 'music-arena' or a Hub id")
    arena.add_argument("--batch", action="append", default=[], help="only this batch (repeat)")
    arena.set_defaults(func=guarded(cmd_music_arena))

    eng = sub.add_parser("engagement", help="Suno/Udio listing -> audio + apex embed manifest")
    eng.add_argument("listing", type=Path, help=".jsonl/.json/.csv/.parquet listing")
    eng.add_argument("--out", type=Path, required=True)
    eng.add_argument("--platform", "--source", choices=("suno", "udio"), help="default: detect")
    eng.add_argument("--limit", type=int, default=None, help="only the first N usable rows")
    power = "exponent after the percentile (default %(default)s)"
    eng.add_argument("--power", type=float, default=ENGAGEMENT_POWER, help=power)
    dataclass_flags(
        eng,
        DownloadConfig,
        skip=("user_agent",),
        help={
            "min_interval_s": "least seconds between two requests to one host",
            "retries": "further attempts per file after the first",
            "backoff_s": "first retry delay, seconds (doubled per retry)",
            "backoff_max_s": "longest retry delay, seconds",
            "timeout_s": "socket timeout per request, seconds",
        },
    )
    eng.add_argument("--dry-run", action="store_true", help="map and score, download nothing")
    eng.set_defaults(func=guarded(cmd_engagement))

    song = sub.add_parser("songeval", help="SongEval ratings -> manifest (CC BY-NC-SA 4.0)")
    song.add_argument("--data", default="ASLP-lab/SongEval", help="folder or Hub dataset id")
    song.add_argument("--manifest", type=Path, required=True)
    song.add_argument("--evaluate", default=None, metavar="MODEL", help="score the test split")
    song.set_defaults(func=guarded(cmd_songeval))


def cmd_arena_demo(args: argparse.Namespace) -> int:
    """Export the demo corpus and simulated votes in Music Arena's layout."""
    from apex.demo import ensure_demo_corpus, load_metadata, simulate_votes
    from apex.settings import Settings
    from apex.sources.music_arena import export_votes

    corpus = ensure_demo_corpus(Settings.from_env())
    votes = simulate_votes(load_metadata(corpus), args.votes, seed=args.seed)
    out = export_votes(corpus, votes, args.out, audio_format=args.audio)
    print(f"DEMO: {len(votes)} simulated battles in Music Arena's layout -> {out}")
    print(f"next: apex eval arena --data {out} --model demo")
    return EXIT_OK


def cmd_music_arena(args: argparse.Namespace) -> int:
    """Resolve (download) a release and print what it holds."""
    from apex.settings import Settings
    from apex.sources import LICENSES
    from apex.sources.music_arena import read_release, resolve

    cache = Settings.from_env().cache_dir / "hub-datasets"
    release = read_release(resolve(args.data, cache_dir=cache, batches=tuple(args.batch)))
    b, clips = release.battles, release.clips()
    counts = b["preference"].value_counts().to_dict()
    print(
        f"{release.root}: {len(b)} battles {counts}, {len(clips)} released clips "
        f"({int(clips['has_audio'].sum())} on disk), {len(release.skipped)} records skipped"
    )
    print(f"licence: {LICENSES['music-arena']}")
    print(
        f"next: apex eval arena --data {release.root}   |   APEX_POOL={release.root} python app.py"
    )
    return EXIT_OK


def cmd_engagement(args: argparse.Namespace) -> int:
    """Map a listing, compute targets, download the audio, write the manifest."""
    from apex.sources import LICENSES
    from apex.sources.download import download_all
    from apex.sources.engagement import download_items, normalise, read_listing, with_targets

    listing, skipped = normalise(read_listing(args.listing), args.platform)
    listing = with_targets(listing.head(args.limit) if args.limit else listing, power=args.power)
    print(
        f"{len(listing)} songs mapped ({len(skipped)} rows skipped), "
        f"splits {listing['split'].value_counts().to_dict()}"
    )
    if skipped:
        print("first skipped rows: " + "; ".join(f"row {i}: {why}" for i, why in skipped[:5]))
    print(f"licence: {LICENSES['suno-metadata']}")
    if args.dry_run:
        return EXIT_OK
    config = from_args(DownloadConfig, args)
    results = download_all(download_items(listing), args.out, config)
    status = {s: sum(r.status == s for r in results) for s in {r.status for r in results}}
    print(f"download: {status} -> {args.out / 'manifest.jsonl'}")
    print(
        f"next: apex embed {args.out / 'manifest.jsonl'} --out {args.out / 'embeddings'} "
        "--encoder m-a-p/MERT-v1-95M"
    )
    return EXIT_OK


def cmd_songeval(args: argparse.Namespace) -> int:
    """Write the SongEval manifest; optionally score its test split and print LCC/SRCC/tau."""
    from apex.settings import Settings
    from apex.sources.songeval import LICENSE, aesthetic_metrics, read_songeval, write_manifest

    settings = Settings.from_env()
    data = read_songeval(_songeval_root(args.data, settings.cache_dir / "hub-datasets"))
    path = write_manifest(data, args.manifest)
    print(f"{len(data.songs)} rated songs, {len(data.skipped)} skipped -> {path}")
    print(f"licence: {LICENSE}; models trained on it inherit the non-commercial terms")
    if args.evaluate:
        import pandas as pd

        from apex.loader import load_scorer

        scorer = load_scorer(args.evaluate, settings=settings)
        test = data.songs[(data.songs["split"] == "test") & data.songs["has_audio"]]
        preds = {
            c: scorer.score(data.root / f)[0].scores
            for c, f in zip(test["clip_id"], test["file_name"], strict=True)
        }
        frame = pd.DataFrame.from_dict(preds, orient="index")  # clips x scores
        metrics = aesthetic_metrics(frame, test.set_index("clip_id"))
        print(json.dumps(metrics, indent=2))
    return EXIT_OK


def _songeval_root(spec: str, cache: Path) -> Path:
    from huggingface_hub import snapshot_download

    from apex.hub_files import hub_errors
    from apex.sources.songeval import SongEvalError

    if Path(spec).expanduser().is_dir():
        return Path(spec).expanduser()
    try:
        return Path(snapshot_download(spec, repo_type="dataset", cache_dir=cache))
    except hub_errors() as exc:  # offline, gated, wrong id: one piece of advice
        raise SongEvalError(
            f"could not download {spec!r} ({type(exc).__name__}: {exc}); the Hub may be "
            "unreachable. Download it elsewhere and pass --data DIR."
        ) from exc
