"""``apex votes`` (an ``apex.cli`` entry point): export, push, restore, simulate, import and
inspect the vote store of :meth:`Settings.from_env`. Exits 0 done, 1 failed, 2 bad input."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from annotation.store import StoreError, VoteRecord, VoteStore, new_vote, open_store
from apex.cli import EXIT_FAILED, EXIT_OK, fail, guarded
from apex.settings import Settings

if TYPE_CHECKING:
    import pandas as pd


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``votes`` subcommand (and its actions) to the ``apex`` parser."""
    votes = subparsers.add_parser(
        "votes",
        help="manage collected votes: export, push to the Hub, restore, simulate, status",
        description="Manage the vote store of APEX_DATA_DIR and its Hub dataset (APEX_VOTES_REPO).",
    )
    actions = votes.add_subparsers(dest="subcommand", metavar="ACTION", required=True)

    p = actions.add_parser(
        "export", help="write Parquet shards (laid out like the Hub dataset), a CSV and the card"
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write into")
    p.set_defaults(func=_command(cmd_export))

    p = actions.add_parser("push", help="push new votes to APEX_VOTES_REPO now (needs HF_TOKEN)")
    p.set_defaults(func=_command(cmd_push))

    p = actions.add_parser("restore", help="import votes from the Hub dataset or a local folder")
    p.add_argument(
        "--from",
        dest="folder",
        type=Path,
        help="folder laid out like the dataset repo (votes/**/*.parquet); default: APEX_VOTES_REPO",
    )
    p.set_defaults(func=_command(cmd_restore))

    p = actions.add_parser(
        "simulate", help="fill a local store with simulated demo votes (source=simulated)"
    )
    p.add_argument("--n", type=int, required=True, help="number of votes to simulate")
    p.add_argument("--seed", type=int, default=0, help="seed (same seed, same votes)")
    p.set_defaults(func=guarded(cmd_simulate, errors=(StoreError,)))

    p = actions.add_parser(
        "import-music-arena",
        help="import a Music Arena release folder's votes (source=imported, kept apart on boards)",
    )
    p.add_argument("folder", type=Path, help="folder in Music Arena's layout (battle_data/, ...)")
    p.set_defaults(func=_command(cmd_import_music_arena))

    p = actions.add_parser("status", help="votes in the store and where the Hub sync stands")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_command(cmd_status))


def _command(
    command: Callable[[argparse.Namespace, Settings, VoteStore], int],
) -> Callable[[argparse.Namespace], int]:
    """A ``votes`` action on ``Settings.from_env()`` and its store, :func:`apex.cli.guarded`."""

    def run(args: argparse.Namespace) -> int:
        settings = Settings.from_env()
        with closing(open_store(settings)) as store:
            return command(args, settings, store)

    return guarded(run, errors=(StoreError,))


def cmd_export(args: argparse.Namespace, settings: Settings, store: VoteStore) -> int:
    """Export new votes into ``settings.export_dir`` (the one shard history, the Hub sync's), then
    copy every shard, a CSV and the card to --out."""
    from annotation.card import build_card, stats_from_shards, write_dataset_card
    from annotation.export import export_shards, to_csv
    from annotation.sync import compact
    from annotation.sync.files import adopt_shards

    out = args.out.expanduser().resolve()
    export_dir = settings.export_dir.resolve()
    new = export_shards(store, export_dir)
    copied = 0
    if out != export_dir:
        copied = len(adopt_shards(export_dir, out, move=False))
        compact.tidy(out)  # shards an earlier export copied that a compacted file now holds
    csv = to_csv(store, out / "votes.csv")
    stats = stats_from_shards(out)
    write_dataset_card(out, build_card(stats, repo_id=settings.votes_repo, settings=settings))
    held = f"{stats.n_shards} shard(s) with {stats.n_votes} votes ({len(stats.systems)} systems)"
    done = f"Exported {len(new)} new shard(s), copied {copied}"
    print(f"{done}; {out} holds {held}, {csv.name} and README.md.")
    return EXIT_OK


def cmd_push(args: argparse.Namespace, settings: Settings, store: VoteStore) -> int:
    """Export and push once; exit 1 with the reason when the push did not succeed."""
    from annotation.sync import VoteSync

    if settings.votes_repo is None:
        return fail(
            args,
            "APEX_VOTES_REPO is not set, so there is no dataset repo to push to; set it to "
            "owner/name and HF_TOKEN to a token with write access.",
        )
    # Hold back the sync's warnings: the command prints the same failure as one error line.
    logger = logging.getLogger("annotation.sync")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        sync = VoteSync(settings, store)
        status = sync.push_now()
        sync.stop(push=False)
    finally:
        logger.setLevel(level)
    if not status.ok:
        return fail(
            args, f"push to {settings.votes_repo} failed: {status.last_error}.", EXIT_FAILED
        )
    print(status.message)
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, settings: Settings, store: VoteStore) -> int:
    """Import shards from --from, or from APEX_VOTES_REPO; idempotent. A missing or malformed
    folder is bad input (exit 2); a Hub that refuses is exit 1."""
    from annotation.sync import SYNC_ERRORS, VoteSync, describe_error, restore_from_folder

    before = store.counts()["votes"]
    if args.folder is not None:
        added = restore_from_folder(store, args.folder.expanduser(), export_dir=settings.export_dir)
        origin = str(args.folder)
    elif settings.votes_repo is None:
        return fail(args, "nothing to restore from: pass --from FOLDER or set APEX_VOTES_REPO.")
    else:
        try:
            added = VoteSync(settings, store).restore()
        except SYNC_ERRORS as err:
            _, message, _ = describe_error(err, settings.votes_repo)
            return fail(args, f"restore from {settings.votes_repo} failed: {message}.", EXIT_FAILED)
        origin = settings.votes_repo
    total = store.counts()["votes"]
    print(f"Imported {added} new votes from {origin} ({before} before, {total} now).")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    """Add ``--n`` simulated votes on the demo corpus; refuses on a store that syncs to the Hub
    (checked before the store is opened, so a refusal creates nothing)."""
    settings = Settings.from_env()
    if settings.votes_repo is not None:
        return fail(
            args,
            f"refusing to add simulated votes: this store syncs to {settings.votes_repo} "
            "(APEX_VOTES_REPO is set). Unset APEX_VOTES_REPO, or point APEX_DATA_DIR at a scratch "
            "folder, to try the pipeline with demo votes.",
        )
    if args.n < 1:
        return fail(args, f"--n {args.n} must be at least 1.")
    from annotation.pool.sources import pool_identity
    from apex.demo import ensure_demo_corpus, load_metadata, simulate_votes

    corpus = ensure_demo_corpus(settings)
    metadata = load_metadata(corpus)
    frame = simulate_votes(metadata, args.n, seed=args.seed)
    records = simulated_records(frame, metadata, pool=pool_identity(corpus))
    with closing(open_store(settings)) as store:
        added = sum(store.insert_vote(record) for record in records)
        total = store.counts()["votes"]
    skipped = len(records) - added
    note = f" ({skipped} were already there; use another --seed for new ones)" if skipped else ""
    print(f"Added {added} simulated votes to {settings.store_path}{note}; {total} votes in all.")
    return EXIT_OK


def simulated_records(
    frame: pd.DataFrame, metadata: pd.DataFrame, *, pool: str | None = None
) -> list[VoteRecord]:
    """:func:`apex.demo.simulate_votes` rows as ``source="simulated"`` records (``pool``: the
    demo corpus's :func:`~annotation.pool.sources.pool_identity`). Listening times are the clips'
    full durations; vote ids derive from battle ids, so the same seed twice adds nothing."""
    clips = metadata.set_index("clip_id")
    records = []
    for row in frame.itertuples(index=False):
        a, b = clips.loc[row.clip_a], clips.loc[row.clip_b]
        battle = {**row._asdict(), "audio_a": str(a["file_name"]), "audio_b": str(b["file_name"])}
        records.append(
            new_vote(
                battle,
                vote_id=f"sim-{row.battle_uuid}",
                battle_uuid=row.battle_uuid,
                voter=row.voter,
                timestamp=row.timestamp.timestamp(),
                preference=row.preference,
                source="simulated",
                pool=pool,
                total_listening_time_a=float(a["duration_s"]),
                total_listening_time_b=float(b["duration_s"]),
            )
        )
    return records


def cmd_import_music_arena(args: argparse.Namespace, settings: Settings, store: VoteStore) -> int:
    """Music Arena's votes into the store, as imported (another layout: exit 2)."""
    from annotation.imports import import_music_arena

    summary = import_music_arena(store, args.folder)
    print(
        f"Imported {summary.added} Music Arena votes ({summary.already} already there, "
        f"{len(summary.skipped)} unreadable records) as source=imported; boards count them only "
        "when asked."
    )
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings, store: VoteStore) -> int:
    """Print the store's counts and the sync status (no network: pending counts are local)."""
    from annotation.sync import VoteSync

    counts = store.counts()
    status = VoteSync(settings, store).status()
    if args.json:
        print(json.dumps({"store": counts, "sync": status.to_dict()}, indent=2))
    else:
        print(
            f"Store {settings.store_path}: {counts['votes']} votes from {counts['voters']} voters."
        )
        print(status.message)
    return EXIT_OK
