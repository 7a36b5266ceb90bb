"""End to end through ``gradio_client`` against the launched app: the README's API, for real.

Score a generated song; refuse bad audio with the scoring core's message; fetch a battle, be
refused before the minimum listen, report listening, vote, see the reveal and the leaderboard move;
another session cannot vote on your battle; a battle takes one vote.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apex.tasks import SCORE_NAMES, SCORE_RANGES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(live_app):
    from gradio_client import Client

    return Client(live_app.url, verbose=False, download_files=False)


def _new_client(live_app):
    from gradio_client import Client

    return Client(live_app.url, verbose=False, download_files=False)


def test_named_endpoints_are_documented(client) -> None:
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/score", "/compare", "/new_battle", "/listen", "/vote", "/leaderboard"} <= set(api)


def test_score_generated_song(client, song: Path) -> None:
    from gradio.utils import get_upload_folder
    from gradio_client import handle_file

    result = client.predict(handle_file(str(song)), api_name="/score")
    assert set(result["scores"]) == set(SCORE_NAMES)
    for name, value in result["scores"].items():
        low, high = SCORE_RANGES[name]
        assert low <= value <= high, (name, value)
    assert result["is_demo"] is True  # the Hub is offline in tests: the demo model answers
    assert result["duration_s"] == pytest.approx(4.0, abs=0.05)
    assert result["segments"], "a timeline needs at least one segment"
    # Uploads are not kept once scored.
    assert not list(Path(get_upload_folder()).rglob(song.name))


def test_bad_audio_gets_the_clear_message(client, tmp_path: Path) -> None:
    from gradio_client import handle_file

    from apex import AudioError, load_audio

    bad = tmp_path / "not-audio.wav"
    bad.write_text("this is a text file, not a song")
    with pytest.raises(AudioError) as expected:
        load_audio(bad)
    with pytest.raises(Exception) as got:
        client.predict(handle_file(str(bad)), api_name="/score")
    message = str(got.value)
    assert "Traceback" not in message
    # The scoring core's own words reach the visitor (the file name differs: it was uploaded).
    core = str(expected.value).split(":", 1)[-1].strip()
    assert core[:30] in message, (core, message)


def test_compare_gives_a_probability(client, song: Path, tmp_path: Path) -> None:
    from gradio_client import handle_file

    from tests.webui.conftest import write_song

    other = write_song(tmp_path / "other.wav", seconds=3.0, seed=1)
    pair = client.predict(handle_file(str(song)), handle_file(str(other)), api_name="/compare")
    assert 0.0 <= pair["p_prefer_a"] <= 1.0
    assert set(pair["a"]["scores"]) == set(pair["b"]["scores"]) == set(SCORE_NAMES)


def _board_after(client, votes: int, **options) -> dict:
    """``/leaderboard`` once its background fit has seen ``votes`` votes (within 30 s)."""
    deadline = time.monotonic() + 30
    while (board := client.predict("all", **options, api_name="/leaderboard"))["votes"] < votes:
        assert time.monotonic() < deadline, board["votes"]
        time.sleep(0.1)
    return board


def test_full_battle(client, live_app) -> None:
    # This battle is heard for just over the minimum, so its vote is flagged (barely_listened):
    # it is stored and published, and the board counts it only with flagged votes included.
    with_flagged = {"include_flagged": True}
    before = client.predict("all", **with_flagged, api_name="/leaderboard")
    info, audio_a, audio_b = client.predict(api_name="/new_battle")
    battle = info["battle_id"]
    assert audio_a and audio_b and audio_a != audio_b
    assert info["min_listen_s"] == live_app.services.settings.min_listen_s

    with pytest.raises(Exception, match="listen to each clip"):
        client.predict(battle, "A", api_name="/vote")  # nothing heard yet: refused

    time.sleep(1.1)  # the server caps claimed listening by the time since issue
    first = client.predict(battle, "A", 1.5, api_name="/listen")
    assert first["can_vote"] is False and first["credit"]["A"] >= 1.0
    second = client.predict(battle, "B", 1.5, api_name="/listen")
    assert second["can_vote"] is True

    reveal = client.predict(battle, "B", "nice bass", {"A": {"coherence": 4}}, api_name="/vote")
    assert reveal["battle_id"] == battle and reveal["preference"] == "B"
    assert reveal["system_a"] and reveal["system_b"] and reveal["system_a"] != reveal["system_b"]
    assert set(reveal["apex_a"]) >= set(SCORE_NAMES)
    assert reveal["apex_pick"] in ("A", "B")
    assert reveal["apex_agrees"] == (reveal["apex_pick"] == "B")

    stored = live_app.services.store.votes_frame().set_index("battle_uuid").loc[battle]
    assert "barely_listened" in stored["flags"].split(",")
    # Boards are refitted off the request path: a read gets the last fit, soon the new one.
    after = _board_after(client, before["votes"] + 1, **with_flagged)
    assert _board_after(client, before["votes"] + 1)["flagged_left_out"] >= 1
    rated = {row["system"]: row["votes"] for row in after["rows"]}
    old = {row["system"]: row["votes"] for row in before["rows"]}
    for system in (reveal["system_a"], reveal["system_b"]):
        assert rated[system] == old.get(system, 0) + 1

    with pytest.raises(Exception, match="already has a vote"):
        client.predict(battle, "A", api_name="/vote")


def test_someone_elses_battle_is_refused(client, live_app) -> None:
    info, _, _ = client.predict(api_name="/new_battle")
    stranger = _new_client(live_app)
    time.sleep(1.1)
    with pytest.raises(Exception, match="another session"):
        stranger.predict(info["battle_id"], "A", 2.0, api_name="/listen")


def test_data_directory_is_not_served(live_app) -> None:
    import httpx

    settings = live_app.services.settings
    for secret in (settings.store_path, settings.data_dir / "salt.secret"):
        assert secret.exists()
        reply = httpx.get(f"{live_app.url}gradio_api/file={secret}")
        assert reply.status_code in (403, 404), secret


def test_leaderboard_boards(client) -> None:
    for board in ("all", "instrumental", "vocal"):
        data = client.predict(board, api_name="/leaderboard")
        assert data["board"] == board
        ranks = [row["rank"] for row in data["rows"]]
        assert ranks == sorted(ranks)
        ratings = [row["rating"] for row in data["rows"]]
        assert ratings == sorted(ratings, reverse=True)
