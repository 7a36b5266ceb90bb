"""The app started on a preloaded Hugging Face cache holding the replicas of the real Hub repos.

As on a Space after ``preload_from_hub``: ``HF_HUB_CACHE`` holds ``amaai-lab/apex`` and
``m-a-p/MERT-v1-95M`` (``tests/apex/hub_replicas.py``), the Hub is offline, ``APEX_MODEL=auto``.
``/score`` through ``gradio_client`` must answer from the published heads on MERT, and the About
tab must say which model and encoder answer, with their revisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apex.scorer import DEMO_NOTICE
from tests.apex import hub_replicas as hr
from tests.webui.conftest import WARMUP_TIMEOUT_S, LiveApp, free_port, write_song

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The production app on the replica cache (a small 8-clip demo pool to score)."""
    from huggingface_hub import constants

    from apex.demo import build_demo_corpus
    from apex.settings import Settings
    from webui import build_services, build_ui, launch_kwargs

    root = tmp_path_factory.mktemp("published-app")
    cache = root / "hf-cache"
    hr.build_cache(cache, root)
    pool = build_demo_corpus(root / "pool", seed=0, n_clips=8)
    settings = Settings.from_env(
        {"APEX_MODEL": "auto", "APEX_PRECISION": "reference"},
        data_dir=root / "data",
        pool=str(pool),
        min_listen_s=1.0,
        rate_limit_votes=10_000,
        port=free_port(),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_CACHE", str(cache))
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        services = build_services(settings)
        demo = build_ui(services)
        demo.launch(**{**launch_kwargs(services), "prevent_thread_lock": True, "quiet": True})
        try:
            if not services.wait(WARMUP_TIMEOUT_S):
                pytest.fail(f"services did not start: {services.status()}")
            yield LiveApp(f"http://127.0.0.1:{settings.port}/", services, demo)
        finally:
            demo.close()
            services.close()


def test_score_answers_from_the_published_path(published_app: LiveApp, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(published_app.url, verbose=False, download_files=False)
    song = write_song(tmp_path / "song.wav", seconds=4.0)
    result = client.predict(handle_file(str(song)), api_name="/score")
    assert result["is_demo"] is False
    assert (result["model_id"], result["model_revision"]) == (hr.APEX_REPO, hr.APEX_REVISION)
    assert (result["encoder_id"], result["encoder_revision"]) == (hr.MERT_REPO, hr.MERT_REVISION)
    assert set(result["scores"]) == set(hr.TASKS)
    assert not any("demo" in w.lower() for w in result["warnings"]), result["warnings"]


def test_about_tab_names_model_encoder_and_revisions(published_app: LiveApp) -> None:
    from webui.about import model_card_markdown, model_info

    raw = model_info(published_app.services)  # what the tab's select handler shows
    card = model_card_markdown(raw, published_app.services)
    print("\n--- About tab on the replica cache ---\n" + card.split("### How the model")[0])
    assert f"`{hr.APEX_REPO}` (version `epoch-50`, published, revision `{hr.APEX_REVISION}`" in card
    assert f"`{hr.MERT_REPO}`, revision `{hr.MERT_REVISION}`" in card
    assert "local Hugging Face cache" in card and "`pytorch_model.bin`" in card
    assert DEMO_NOTICE not in card and "**Why the demo answers:**" not in card
    assert raw["revision"] == hr.APEX_REVISION
