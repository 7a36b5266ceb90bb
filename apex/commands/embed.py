"""``apex embed``: embed a corpus into resumable Parquet shards (see :mod:`apex.embed`).

Examples::

    apex embed data/demo/engagement.jsonl --out var/embeddings/demo             # fallback encoder
    apex embed songs.csv --out emb/ --encoder m-a-p/MERT-v1-95M --workers 8 --batch-size 16
    apex embed songs.jsonl --out emb/ --encoder m-a-p/MERT-v1-95M --engine ray --address auto
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``embed`` subcommand to the ``apex`` parser."""
    from apex.embed.job import ENGINES, EmbedConfig

    defaults = EmbedConfig(manifest="", out=Path())
    p = subparsers.add_parser(
        "embed",
        help="embed a corpus (manifest) into resumable Parquet shards",
        description="Embed every song of MANIFEST (JSONL/CSV with id + audio path/URL, or a Hub "
        "dataset id) into Parquet shards under --out. Reruns skip finished songs; songs that "
        "fail are listed with their reason in OUT/errors/.",
    )
    p.add_argument("manifest", help="JSONL/CSV manifest or Hub dataset id (owner/name)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument(
        "--encoder",
        default=defaults.encoder,
        help="'fallback', a local MERT/HuBERT directory, or a Hub id (default: %(default)s)",
    )
    p.add_argument(
        "--precision",
        choices=("fast", "reference"),
        default=defaults.precision,
        help="MERT compute precision: fast (bf16 where supported) or reference (fp32)",
    )
    p.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:N")
    p.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="decoding processes, local engine (default: %(default)s; 0 = in process)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="clips per encoder call, and MERT segments per forward pass",
    )
    p.add_argument(
        "--shard-size", type=int, default=defaults.shard_size, help="songs per Parquet shard"
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default=defaults.engine,
        help="local (process pool + one encoder) or ray (Ray Data: CPU decode tasks, one "
        "encoder actor per GPU; needs the .[ray] extra)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (auto, ray://host:10001)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (no --address)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=defaults.max_seconds,
        help="longest accepted song in seconds; longer ones go to the errors shard",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let a checkpoint run its own modelling code (off by default)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_embed)


def cmd_embed(args: argparse.Namespace) -> int:
    """Run the job; print a one-line summary; exit 1 on a job-level error, 0 otherwise."""
    from apex.embed import EmbedConfig, EmbedError, ManifestError, run_embed
    from apex.encoders import EncoderUnavailable

    try:
        config = EmbedConfig(
            manifest=args.manifest,
            out=args.out,
            encoder=args.encoder,
            precision=args.precision,
            device=args.device,
            workers=args.workers,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            engine=args.engine,
            address=args.address,
            num_cpus=args.num_cpus,
            max_seconds=args.max_seconds,
            trust_remote_code=args.trust_remote_code,
            progress=args.progress,
        )
        summary = run_embed(config)
    except (ValueError, ManifestError, EmbedError, EncoderUnavailable) as err:
        print(f"apex embed: {err}", file=sys.stderr)
        return 1
    print(
        f"embedded {summary.embedded}, failed {summary.failed}, skipped {summary.skipped} "
        f"(already done) of {summary.total} songs in {summary.seconds:.1f} s "
        f"({summary.songs_per_s:.2f} songs/s, {summary.audio_x_realtime:.1f}x real time) "
        f"-> {summary.out}"
    )
    if summary.failed:
        print(f"see {summary.out / 'errors'} for the reasons", file=sys.stderr)
    return 0
