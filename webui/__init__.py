"""The Gradio user interface (the only package that imports gradio).

Public API: :func:`build_ui` (the ``gr.Blocks`` app, queue configured, for a :class:`Services`
that may still be warming up), :func:`launch_kwargs` (what ``Blocks.launch`` needs) and
:func:`build_services`. Importing it builds nothing.
"""

from webui.layout import build_ui, launch_kwargs
from webui.services import NotReady, Services, build_services

__all__ = ["NotReady", "Services", "build_services", "build_ui", "launch_kwargs"]
