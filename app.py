"""APEX Arena, the Hugging Face Space entry point: ``python app.py`` serves until Ctrl-C or
SIGTERM (a Space restart), then ``Services.close()`` stops the workers and pushes pending votes."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

log = logging.getLogger("apex.app")

#: Gradio re-summarises its request analytics (a pandas group-by) after every event by default,
#: costing more CPU than the votes at arena rates; it only feeds the API page's timing hints.
GRADIO_DEFAULTS = {"GRADIO_ANALYTICS_CACHE_FREQUENCY": "500", "GRADIO_ANALYTICS_MAX_EVENTS": "2000"}


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: stop like Ctrl-C (the launch loop and ``finally:`` blocks run); once only."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the last push
    log.info("SIGTERM received: closing the server, pushing pending votes, then exiting.")
    raise KeyboardInterrupt


def main() -> None:
    """Read the settings, start the services, build the UI and serve it until interrupted."""
    from apex.settings import Settings
    from webui import build_services, build_ui, launch_kwargs
    from webui.about import config_warnings

    for name, value in GRADIO_DEFAULTS.items():
        os.environ.setdefault(name, value)  # before the Blocks (and its queue) exist
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    settings = Settings.from_env()
    for warning in config_warnings(settings):  # a Space without the Hub repos or a token
        log.warning(warning)
    services = build_services(settings)
    try:
        # Blocks; returns on Ctrl-C or SIGTERM (a KeyboardInterrupt). GRADIO_SERVER_NAME/_PORT win.
        build_ui(services).launch(**launch_kwargs(services))
    except KeyboardInterrupt:
        pass  # arrived before the launch loop caught it: the same graceful stop
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        services.close()
        log.info("Stopped.")
    # Exit without the interpreter's teardown, everything durable being done: tearing it down
    # under a daemon thread still inside torch (the scorer loading) aborts in C++ (exit -6).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
