"""The page: header, warm-up line, the five tabs, queue limits and launch options."""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from webui import about, arena, data, leaderboard, score, uploads
from webui.arena_view import served_folder
from webui.services import Services

#: Events running at once per ``concurrency_id`` group (scoring: ``APEX_SCORE_CONCURRENCY``):
#: arena calls are millisecond SQLite operations many visitors make, and must not wait behind
#: scoring; reads are leaderboard fits and exports; the default is for UI refreshes.
ARENA_CONCURRENCY, READ_CONCURRENCY, DEFAULT_CONCURRENCY = 32, 4, 8
#: Requests that may wait in the queue before new ones are turned away.
QUEUE_MAX_SIZE = 512
#: Temporary files (JSON downloads, exports, copies of served clips) older than this are removed.
CACHE_MAX_AGE_S = 3600

CSS = """
#score-banner { border-left: 4px solid #E69F00; padding: 0.4em 0.8em;
  background: rgba(230, 159, 0, 0.08); }
#warmup-line { color: #8a6d00; }
.vote-row button { min-height: 3em; }
"""

HEADER = (
    "# APEX Arena\n"
    "Score AI-generated songs with **APEX**, vote in blind battles between music generators, and "
    "watch the leaderboard. [Paper](https://arxiv.org/abs/2605.03395) · "
    "[Code](https://github.com/AMAAI-Lab/apex)"
)


def _warmup_line(services: Services) -> tuple[Any, Any]:
    line = services.status_line()
    text = f"Starting up: {line}." if line else ""
    # Stop polling once nothing is warming up any more.
    return gr.update(value=text, visible=bool(text)), gr.Timer(active=bool(line))


def build_ui(services: Services) -> gr.Blocks:
    """Build the app: components, events, queue."""
    # Arena clips are served from their anonymised links (no copy into gradio's cache); only
    # that folder is exposed, never the data directory (the vote store, the pseudonym salt).
    gr.set_static_paths([served_folder(services.settings)])
    with gr.Blocks(title="APEX Arena", delete_cache=(CACHE_MAX_AGE_S, CACHE_MAX_AGE_S)) as demo:
        gr.Markdown(HEADER)
        warmup = gr.Markdown(visible=False, elem_id="warmup-line")
        poll = gr.Timer(2.0)
        with gr.Tabs():
            with gr.Tab("Score", id="score"):
                score.build(services)
            with gr.Tab("Arena", id="arena") as arena_page:
                arena.build(services, arena_page, concurrency=ARENA_CONCURRENCY)
            with gr.Tab("Leaderboard", id="leaderboard") as board_tab:
                leaderboard.build(services, board_tab, concurrency=READ_CONCURRENCY)
            with gr.Tab("Data", id="data") as data_tab:
                data.build(services, data_tab, concurrency=READ_CONCURRENCY)
            with gr.Tab("About", id="about") as about_tab:
                about.build(services, about_tab)
        for trigger in (demo.load, poll.tick):
            trigger(
                lambda: _warmup_line(services),
                None,
                [warmup, poll],
                api_visibility="private",
                show_progress="hidden",
            )
    demo.queue(
        default_concurrency_limit=DEFAULT_CONCURRENCY,
        max_size=QUEUE_MAX_SIZE,
        status_update_rate=1.0,
    )
    return demo


def server_address(settings: Any) -> tuple[str, int]:
    """``(host, port)`` to listen on: Gradio's own ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``
    when set (a Space, a container), else ``APEX_HOST``/``APEX_PORT``. Raises ``ValueError``:
    ``GRADIO_SERVER_PORT`` is not a port number."""
    host = os.environ.get("GRADIO_SERVER_NAME", "").strip() or settings.host
    raw = os.environ.get("GRADIO_SERVER_PORT", "").strip()
    if not raw:
        return host, int(settings.port)
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"GRADIO_SERVER_PORT={raw!r} is not a port (1-65535); fix or unset it.")
    return host, int(raw)


def launch_kwargs(services: Services) -> dict[str, Any]:
    """``Blocks.launch`` arguments: where to listen, look and feel, what may be served."""
    settings = services.settings
    host, port = server_address(settings)
    return {
        "server_name": host,
        "server_port": port,
        "theme": gr.themes.Soft(primary_hue="indigo", secondary_hue="amber"),
        "css": CSS,
        "max_file_size": f"{int(settings.max_audio_s / 60 * 12) + 10}mb",
        "show_error": True,
        "footer_links": ["api", "gradio"],
        # Counts uploads, so a file two requests share is deleted only after both (webui.uploads).
        "app_kwargs": uploads.app_kwargs(services),
    }
