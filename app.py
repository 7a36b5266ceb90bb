"""APEX Arena: the Hugging Face Space entry point. Wires settings, services and the UI; launches.

``python app.py`` (or ``make app``) serves on ``APEX_HOST:APEX_PORT``; Gradio's own
``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT`` (set by the Space platform) win when set. The page
comes up at once; the scorer and the clip pool warm up in the background and the tabs say so.
"""

from __future__ import annotations

import logging
import os

#: Gradio re-summarises its request analytics (a pandas group-by over the last 10,000 events)
#: after every event by default: at arena rates that costs more CPU than the votes themselves.
#: Refresh the summary every 500 events instead (it only feeds the API page's timing hints).
GRADIO_DEFAULTS = {"GRADIO_ANALYTICS_CACHE_FREQUENCY": "500", "GRADIO_ANALYTICS_MAX_EVENTS": "2000"}


def main() -> None:
    """Read the settings, start the services, build the UI and serve it until interrupted."""
    from apex.settings import Settings
    from webui import build_services, build_ui, launch_kwargs

    for name, value in GRADIO_DEFAULTS.items():
        os.environ.setdefault(name, value)  # before the Blocks (and its queue) exist
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings.from_env()
    services = build_services(settings)
    demo = build_ui(services)
    kwargs = launch_kwargs(services)  # GRADIO_SERVER_NAME / _PORT win when set
    try:
        demo.launch(**kwargs)
    finally:
        services.close()


if __name__ == "__main__":
    main()
