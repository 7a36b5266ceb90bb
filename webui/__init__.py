"""The Gradio user interface (the only package that imports gradio): :func:`build_services`, and
``build_ui`` and ``launch_kwargs`` from :mod:`webui.layout`, imported on first use so that
importing ``webui`` imports neither gradio nor torch (tests/webui/test_cold_start.py).
"""

from typing import Any

from webui.services import build_services

__all__ = ["build_services", "build_ui", "launch_kwargs"]


def __getattr__(name: str) -> Any:
    if name in ("build_ui", "launch_kwargs"):
        from webui import layout

        return getattr(layout, name)
    raise AttributeError(f"module 'webui' has no attribute {name!r}")
