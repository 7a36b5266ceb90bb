"""APEX Arena: the Hugging Face Space entry point. Wires settings, services and the UI; launches.

``python app.py`` (or ``make app``) serves on ``APEX_HOST:APEX_PORT``; on a Space the platform sets
``GRADIO_SERVER_NAME``/``PORT``, which gradio honours over our defaults. The page comes up at once;
the scorer and the clip pool warm up in the background and the tabs say so meanwhile.
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
    kwargs = launch_kwargs(services)
    # On a Space the platform decides where to listen (GRADIO_SERVER_NAME / PORT).
    if os.environ.get("SPACE_ID"):
        kwargs.pop("server_name"), kwargs.pop("server_port")
    try:
        demo.launch(**kwargs)
    finally:
        services.close()


if __name__ == "__main__":
    main()
