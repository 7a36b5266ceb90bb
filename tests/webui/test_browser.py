"""A real browser (Debian's Chromium through Playwright) uses the launched app like a visitor.

It scores a generated song, plays both arena clips until the server unlocks voting, votes, checks
the reveal, and opens every tab, saving a full-page screenshot of each under
``test-output/screenshots/`` (gitignored): they are what a visitor sees. Then a second app serves
a popularity-only reference checkpoint (streams and likes), through the Score and Compare tabs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from apex.scorer import DEMO_NOTICE
from apex.tasks import AESTHETICS
from tests.webui.conftest import WARMUP_TIMEOUT_S, free_port, write_song

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Headless has no speakers; audio still plays (and times) through a fake output device.
    "--autoplay-policy=no-user-gesture-required",
]
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="no /usr/bin/chromium (run `make browser` as root to add it)"
    ),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#score-button")
    return page


@pytest.fixture(scope="module")
def page(browser, live_app):
    return _open(browser, live_app.url)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def test_score_tab_scores_an_upload(page, song: Path) -> None:
    _tab(page, "Score")
    page.locator("input[type=file]").first.set_input_files(str(song))
    page.locator("#score-button").click()
    page.locator("#score-banner").get_by_text(DEMO_NOTICE).wait_for()
    page.get_by_text(re.compile(r"higher than \d+% of the songs")).first.wait_for()
    page.locator(".js-plotly-plot").nth(1).wait_for()  # radar and timeline drawn
    assert page.locator(".js-plotly-plot .polarlayer .trace").count() == 1  # one song
    page.screenshot(path=str(SHOTS / "1-score.png"), full_page=True)


def _listen(page, side: str) -> None:
    """Press play on one player until the server credits the minimum listen.

    A click that lands while the player is still loading can be swallowed, as for a person,
    who would press play again: so do we, a few times.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    button = page.locator(f"#player-{side} button.play-pause-button")
    done = page.get_by_text(re.compile(rf"{side.upper()} 1 / 1 s \(done\)"))
    for _ in range(4):
        if button.get_attribute("aria-label") == "Play":
            button.click()
        try:
            done.wait_for(timeout=8_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the server never credited listening to clip {side.upper()}")


def test_arena_listen_vote_reveal(page) -> None:
    _tab(page, "Arena")
    vote_a = page.locator("#vote-a")
    page.locator("#player-a button.play-pause-button").wait_for()
    assert vote_a.is_disabled(), "voting must be locked before listening"
    _listen(page, "a")
    assert vote_a.is_disabled(), "one clip is not enough"
    _listen(page, "b")
    page.wait_for_function("!document.querySelector('#vote-a').disabled")
    vote_a.click()
    reveal = page.locator("#reveal")
    reveal.get_by_text("You voted: A is better").wait_for()
    text = reveal.inner_text()
    assert "System" in text and "APEX preferred" in text
    assert re.search(r"APEX (agreed|disagreed) with you", text)
    page.locator("#session-votes").get_by_text("Your votes this session: 1").wait_for()
    assert vote_a.is_disabled(), "one vote per battle"
    page.screenshot(path=str(SHOTS / "2-arena.png"), full_page=True)


def test_leaderboard_tab_shows_the_vote(page) -> None:
    _tab(page, "Leaderboard")
    page.get_by_text(re.compile(r"\d+ rated votes on this board")).wait_for()
    page.locator(".js-plotly-plot").last.wait_for()
    # The board refits in the background and shows its last fit at once, so on a busy machine
    # the vote may land in the next fit: Refresh, as a visitor would, until it does.
    agrees = page.get_by_text("APEX agrees with listeners")
    deadline = time.monotonic() + 90
    while not agrees.is_visible() and time.monotonic() < deadline:
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(2000)
    agrees.wait_for()
    page.screenshot(path=str(SHOTS / "3-leaderboard.png"), full_page=True)


def test_data_tab_offers_downloads(page) -> None:
    _tab(page, "Data")
    page.get_by_text(re.compile(r"\d+ votes collected")).wait_for()
    assert page.locator("#dl-parquet").is_enabled()
    page.get_by_text("battle_uuid").first.wait_for()
    page.screenshot(path=str(SHOTS / "4-data.png"), full_page=True)


def test_about_tab_shows_the_model_card(page) -> None:
    _tab(page, "About")
    page.locator("#model-card").get_by_text("Serving model").wait_for()
    page.get_by_text("2605.03395").first.wait_for()
    page.screenshot(path=str(SHOTS / "5-about.png"), full_page=True)


def _wide_tiny_mert(folder: Path) -> Path:
    """A random MERT-style encoder loaded like the real one (config, preprocessor, weights): 13
    hidden states 768 wide, as the reference ``.pt`` layout needs, but tiny convolutions and
    feed-forwards."""
    import json

    from safetensors.torch import save_file

    from apex.encoders.hubert import (
        build_hubert,
        config_json,
        legacy_state_dict,
        mert_95m_config,
        write_preprocessor_config,
    )

    config = mert_95m_config(intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16)
    folder.mkdir(parents=True)
    save_file(legacy_state_dict(build_hubert(config, seed=0)), str(folder / "model.safetensors"))
    # Named as the checkpoint's encoder, so the scorer raises no mismatch warning.
    raw = {**config_json(config), "_name_or_path": "m-a-p/MERT-v1-95M"}
    (folder / "config.json").write_text(json.dumps(raw, default=list))
    write_preprocessor_config(folder)
    return folder


def _popularity_checkpoint(path: Path) -> Path:
    """A reference-layout ``best_model.pt`` trained for ``task: popularity`` (random weights)."""
    import torch

    from apex.heads import ReferenceHeads

    heads = ReferenceHeads(task="popularity")
    torch.save({"model_state": heads.state_dict(), "task": "popularity", "shared": 2}, path)
    return path


@pytest.fixture(scope="module")
def popularity_page(browser, tmp_path_factory):
    """The production app (store and scorer) serving a popularity-only ``.pt`` on MERT."""
    from apex.settings import Settings
    from webui import build_ui, launch_kwargs
    from webui.services import Services, default_builders

    folder = tmp_path_factory.mktemp("popularity")
    settings = Settings.from_env(
        {},
        data_dir=folder / "data",
        model=str(_popularity_checkpoint(folder / "best_model.pt")),
        encoder=str(_wide_tiny_mert(folder / "mert")),
        port=free_port(),
        refit_hours=0.0,
    )
    builders = {k: v for k, v in default_builders().items() if k in ("store", "scorer")}
    services = Services(settings, builders).start()
    demo = build_ui(services)
    demo.launch(**{**launch_kwargs(services), "prevent_thread_lock": True, "quiet": True})
    try:
        assert services.wait(WARMUP_TIMEOUT_S), services.status()
        yield _open(browser, f"http://127.0.0.1:{settings.port}/")
    finally:
        demo.close()
        services.close()


#: A 30 s MERT segment 768 wide on a shared CPU: tens of seconds per song.
SCORING_MS = 600_000


def _shows_only_popularity(page, *selectors: str) -> None:
    for selector in selectors:
        text = page.locator(selector).inner_text()
        assert "Streams" in text and "Likes" in text, (selector, text)
        assert not any(dim.lower() in text.lower() for dim in AESTHETICS), (selector, text)
    assert page.locator(".toast-body.error").count() == 0


def test_a_popularity_only_model_through_score_and_compare(popularity_page, song: Path) -> None:
    page = popularity_page
    page.locator("#score-audio input[type=file]").set_input_files(str(song))
    page.locator("#score-button").click()
    page.locator("#score-summary").get_by_text("Streams:").wait_for(timeout=SCORING_MS)
    page.locator("#score-radar").get_by_text("predicts no aesthetic scores").wait_for()
    _shows_only_popularity(page, "#score-table", "#score-summary")
    page.screenshot(path=str(SHOTS / "6-popularity-score.png"), full_page=True)

    _tab(page, "Compare two")
    other = write_song(song.with_name("other.wav"), seed=1)
    page.locator("#compare-a input[type=file]").set_input_files(str(song))
    page.locator("#compare-b input[type=file]").set_input_files(str(other))
    page.locator("#compare-button").click()
    page.locator("#compare-text").get_by_text("P(prefer A)").wait_for(timeout=SCORING_MS)
    page.locator("#compare-table").get_by_text("Likes").wait_for()
    page.locator("#compare-radar").get_by_text("predicts no aesthetic scores").wait_for()
    _shows_only_popularity(page, "#compare-table")
    page.screenshot(path=str(SHOTS / "7-popularity-compare.png"), full_page=True)
