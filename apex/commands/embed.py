"""``apex embed``: embed a corpus into resumable Parquet shards (see :mod:`apex.embed`)::

apex embed songs.csv --out emb/ --encoder m-a-p/MERT-v1-95M --workers 8 --batch-size 16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apex.cli import EXIT_FAILED, EXIT_OK, dataclass_flags, from_args, guarded

#: Help of the flags generated from :class:`apex.embed.EmbedConfig`.
_HELP = {
    "encoder": "'fallback', a local MERT/HuBERT directory, or a Hub id",
    "precision": "MERT compute precision: fast (bf16 where supported) or reference (fp32)",
    "device": "auto, cpu, cuda, cuda:N",
    "workers": "decoding processes, local engine (0 = in process)",
    "batch_size": "clips per encoder call, and MERT segments per forward pass",
    "shard_size": "songs per Parquet shard",
    "engine": "local (process pool + one encoder) or ray (Ray Data: CPU decode tasks, one "
    "encoder actor per GPU; needs the .[ray] extra)",
    "address": "Ray cluster address (auto, ray://host:10001)",
    "num_cpus": "CPUs of a local Ray (no --address)",
    "max_seconds": "longest accepted song in seconds; longer ones go to the errors shard",
    "trust_remote_code": "let a checkpoint run its own modelling code (off by default)",
    "progress": "show a progress bar on stderr",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``embed`` subcommand to the ``apex`` parser."""
    from apex.embed import ENGINES, EmbedConfig, EmbedError, ManifestError
    from apex.encoders import EncoderUnavailable

    p = subparsers.add_parser(
        "embed",
        help="embed a corpus (manifest) into resumable Parquet shards",
        description="Embed every song of MANIFEST (JSONL/CSV with id + audio path/URL, or a Hub "
        "dataset id) into Parquet shards under --out. Reruns skip finished songs; songs that "
        "fail are listed with their reason in OUT/errors/.",
    )
    p.add_argument("manifest", help="JSONL/CSV manifest or Hub dataset id (owner/name)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    dataclass_flags(
        p,
        EmbedConfig,
        skip=("manifest", "out"),
        choices={"precision": ("fast", "reference"), "engine": ENGINES},
        help=_HELP,
    )
    p.set_defaults(func=guarded(cmd_embed, errors=(ManifestError, EmbedError, EncoderUnavailable)))


def cmd_embed(args: argparse.Namespace) -> int:
    """Run the job; print a one-line summary; exit 1 if any song failed, 2 on a job-level error."""
    from apex.embed import EmbedConfig, run_embed

    summary = run_embed(from_args(EmbedConfig, args))
    print(
        f"embedded {summary.embedded}, failed {summary.failed}, skipped {summary.skipped} "
        f"(already done) of {summary.total} songs in {summary.seconds:.1f} s "
        f"({summary.songs_per_s:.2f} songs/s, {summary.audio_x_realtime:.1f}x real time) "
        f"-> {summary.out}"
    )
    if summary.failed:
        print(f"see {summary.out / 'errors'} for the reasons", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
