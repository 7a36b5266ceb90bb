"""The Gradio user interface (the only package that imports gradio): :func:`build_services`,
:func:`build_ui` and :func:`launch_kwargs`. Importing it imports neither gradio nor torch (the
start-up thread's imports stay light, tests/webui/test_cold_start.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webui.services import Services, build_services

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["build_services", "build_ui", "launch_kwargs"]


def build_ui(services: Services) -> gr.Blocks:
    """The five-tab app, queue configured."""
    from webui import layout

    return layout.build_ui(services)


def launch_kwargs(services: Services) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: host/port, theme, css, upload limits."""
    from webui import layout

    return layout.launch_kwargs(services)
