"""The Gradio user interface (the only package that imports gradio).

Public API: :func:`build_ui` (the ``gr.Blocks`` app for a :class:`Services`), :func:`launch_kwargs`
(what ``Blocks.launch`` needs: host, port, theme, css), :class:`Services` and
:func:`build_services`. Importing this package imports gradio but builds nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webui.services import NotReady, Services, build_services

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["NotReady", "Services", "build_services", "build_ui", "launch_kwargs"]


def build_ui(services: Services) -> gr.Blocks:
    """Build the five-tab app, queue configured. Services may still be warming up."""
    from webui.layout import build_blocks

    return build_blocks(services)


def launch_kwargs(services: Services) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: host/port, theme, css, upload size limit."""
    from webui.layout import launch_kwargs as _launch_kwargs

    return _launch_kwargs(services)
