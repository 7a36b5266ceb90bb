"""Data tab: every vote as Parquet and CSV (the released columns of :mod:`annotation.export`),
what each column means, and the Hub sync status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from apex.files import atomic_dir, sha256_text
from webui.services import NotReady, Services
from webui.uploads import remove_tree, upload_root


def columns_frame() -> pd.DataFrame:
    """The released columns and their descriptions (``annotation.export.VOTE_COLUMNS``)."""
    from annotation.export import VOTE_COLUMNS

    return pd.DataFrame(list(VOTE_COLUMNS.items()), columns=["column", "meaning"])


def flags_markdown(votes: pd.DataFrame) -> str:
    """How many votes carry vote-quality flags, and for which reasons (they stay in the files)."""
    from annotation.flags import FLAG_REASONS, flag_summary

    counts = flag_summary(votes)
    if not counts["flagged"]:
        return "**Vote quality:** no vote is flagged."
    why = ", ".join(f"{r.replace('_', ' ')} {counts[r]}" for r in FLAG_REASONS if counts[r])
    return (
        f"**Vote quality:** {counts['flagged']} of {len(votes)} votes are flagged ({why}; a vote "
        "may have several reasons). Flagged votes stay in the files (`flags` column) and are left "
        "out of the leaderboard unless it is asked to include them."
    )


def export_files(services: Services) -> tuple[str, str, int]:
    """All votes as Parquet and CSV: (parquet, csv, rows). Written once per state of the store
    (newest row, vote count); the previous state's files are removed when a new one is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from annotation.export import SCHEMA, release_frame

    store = services.store
    # One deployment's exports never touch another's (two apps may share gradio's cache).
    deployment = sha256_text(str(Path(services.settings.data_dir).resolve()))[:16]
    state = sha256_text(f"{store.max_row_id()}|{store.counts()['votes']}")[:16]
    folder = upload_root() / f"apex-votes-{deployment}-{state}"
    parquet, csv = folder / "apex-arena-votes.parquet", folder / "apex-arena-votes.csv"
    rows_file = folder / "rows.txt"
    if rows_file.exists() and parquet.exists() and csv.exists():
        return str(parquet), str(csv), int(rows_file.read_text())
    frame = release_frame(store.votes_frame())
    # Staged in one folder renamed into place (a reader never sees a new Parquet beside an old
    # CSV); a folder another request completed first for this state is kept (same contents).
    with atomic_dir(folder, exist_ok=True) as staging:
        pq.write_table(
            pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), staging / parquet.name
        )
        frame.to_csv(staging / csv.name, index=False)
        (staging / rows_file.name).write_text(str(len(frame)))
    for old in upload_root().glob(f"apex-votes-{deployment}-*"):
        if old != folder:
            remove_tree(old)
    return str(parquet), str(csv), len(frame)


def sync_status(services: Services) -> dict[str, Any]:
    """The Hub sync status as JSON (``SyncStatus.to_dict``), or why there is none."""
    try:
        sync = services.get("sync")
    except NotReady as err:
        return {"state": "unavailable", "message": str(err)}
    return sync.status().to_dict()


def summary_markdown(services: Services, rows: int, status: dict[str, Any]) -> str:
    """Vote count, vote-quality flags, Hub dataset link and sync line."""
    repo = services.settings.votes_repo
    lines = [f"### {rows} votes collected", flags_markdown(services.store.votes_frame())]
    if repo:
        url = f"https://huggingface.co/datasets/{repo}"
        lines.append(
            f"Published on the Hub: [{repo}]({url}) · load it with "
            f'`datasets.load_dataset("{repo}")`'
        )
    else:
        lines.append("No Hub dataset is configured on this deployment (`APEX_VOTES_REPO`).")
    lines.append(f"**Sync:** {status.get('message', '')}")
    return "\n\n".join(lines)


def refresh(services: Services) -> tuple[str, Any, Any, dict[str, Any]]:
    """Summary, the two download buttons (with fresh files) and the raw sync status."""
    try:
        parquet, csv, rows = export_files(services)
    except NotReady as err:
        off = gr.DownloadButton(interactive=False)
        return f"_{err}_", off, off, {}
    status = sync_status(services)
    return (
        summary_markdown(services, rows, status),
        gr.DownloadButton(value=parquet, interactive=True),
        gr.DownloadButton(value=csv, interactive=True),
        status,
    )


def build(services: Services, tab: gr.Tab, *, concurrency: int = 4) -> None:
    """Lay out the Data tab; files are prepared when the tab opens and on Refresh."""
    gr.Markdown(
        "Every vote cast in the Arena, with the listening times, optional feedback and ratings, "
        "APEX's predictions at vote time, each clip's loudness as generated (the Arena plays "
        "clips loudness-matched) and any vote-quality flags. Voters appear only as salted "
        "pseudonyms."
    )
    summary = gr.Markdown("Open this tab to prepare the files.", elem_id="data-summary")
    with gr.Row():
        parquet = gr.DownloadButton(
            "Download votes (Parquet)", interactive=False, elem_id="dl-parquet"
        )
        csv = gr.DownloadButton("Download votes (CSV)", interactive=False, elem_id="dl-csv")
        again = gr.Button("Refresh")
    gr.Dataframe(
        value=columns_frame(),
        label="Columns",
        interactive=False,
        wrap=True,
        column_widths=["25%", "75%"],
    )
    with gr.Accordion("Sync status (JSON)", open=False):
        raw = gr.JSON()
    for trigger in (tab.select, again.click):
        trigger(
            lambda: refresh(services),
            None,
            [summary, parquet, csv, raw],
            api_visibility="private",
            concurrency_limit=concurrency,
            concurrency_id="read",
        )
