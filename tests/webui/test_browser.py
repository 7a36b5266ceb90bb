"""A real browser (Debian's Chromium through Playwright) uses the launched app like a visitor.

It scores a generated song, plays both arena clips until the server unlocks voting, votes, checks
the reveal, and opens every tab, saving a full-page screenshot of each under
``test-output/screenshots/`` (gitignored): they are what a visitor sees.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apex.scorer import DEMO_NOTICE

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
def page(live_app):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(live_app.url)
        page.wait_for_selector("#score-button")
        yield page
        browser.close()


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
    page.get_by_text("APEX agrees with listeners").wait_for()
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
