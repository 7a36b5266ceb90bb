"""Hostile and careless clients against the launched app, through ``gradio_client``.

Malformed ``/listen`` and ``/vote`` arguments get a titled, plain message and store nothing; one
client cannot issue battles without limit; the same upload used twice (A = B, or two visitors
sending identical bytes at once) is scored every time and still deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apex.settings import Settings
from apex.tasks import SCORE_NAMES

pytestmark = pytest.mark.slow

RAW_PYTHON = ("Traceback", "object has no attribute", "Errno", "No such file", "'NoneType'")


def _client(live_app):
    from gradio_client import Client

    return Client(live_app.url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def client(live_app):
    return _client(live_app)


def _refusal(client, *args, api_name: str):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    err = info.value
    assert err.title not in ("", "Error"), (err.title, err.message)
    assert not any(raw in err.message for raw in RAW_PYTHON), err.message
    assert "/tmp" not in err.message and "/data" not in err.message, err.message
    return err


def _stored(live_app) -> dict[str, int]:
    counts = live_app.services.store.counts()
    return {k: counts[k] for k in ("battles", "listen_events", "votes")}


@pytest.mark.parametrize("seconds", ["abc", None, [1], "5", True])
def test_malformed_listen_gets_a_titled_message(client, live_app, seconds) -> None:
    info, _, _ = client.predict(api_name="/new_battle")
    time.sleep(1.1)
    before = _stored(live_app)
    err = _refusal(client, info["battle_id"], "A", seconds, api_name="/listen")
    assert "finite number" in err.message
    assert _stored(live_app) == before


def _raw_call(live_app, api_name: str, data: list, session: str) -> dict:
    """Call an endpoint over gradio's queue protocol with ASCII-escaped JSON, as any HTTP client
    can (``gradio_client``'s encoder cannot send a lone surrogate such as ``"\\ud800"``).

    Returns the ``process_completed`` message (``success``, ``output``, ``title``).
    """
    import json

    import httpx

    config = httpx.get(f"{live_app.url}config").json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    body = json.dumps({"data": data, "fn_index": fn, "session_hash": session}, ensure_ascii=True)
    joined = httpx.post(
        f"{live_app.url}gradio_api/queue/join",
        content=body.encode("ascii"),
        headers={"content-type": "application/json"},
    )
    assert joined.status_code == 200, joined.text
    url = f"{live_app.url}gradio_api/queue/data?session_hash={session}"
    with httpx.stream("GET", url, timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the call never completed")


def test_lone_surrogate_feedback_gets_a_titled_message(live_app) -> None:
    import uuid

    session = uuid.uuid4().hex  # one session throughout, so the vote passes every other rule
    issued = _raw_call(live_app, "new_battle", [], session)
    battle = issued["output"]["data"][0]["battle_id"]
    time.sleep(1.1)
    for side in ("A", "B"):
        assert _raw_call(live_app, "listen", [battle, side, 1.5], session)["success"]
    before = _stored(live_app)
    done = _raw_call(live_app, "vote", [battle, "A", "\ud800", None], session)
    assert done["success"] is False and done["title"] not in (None, "", "Error"), done
    message = done["output"]["error"]
    assert "feedback" in message and not any(raw in message for raw in RAW_PYTHON), message
    assert _stored(live_app) == before


@pytest.mark.parametrize(
    "ratings,feedback",
    [({"A": 5}, ""), ([1, 2], ""), ("x", "")],
    ids=["side-not-object", "list", "string"],
)
def test_malformed_vote_gets_a_titled_message(client, live_app, ratings, feedback) -> None:
    info, _, _ = client.predict(api_name="/new_battle")
    battle = info["battle_id"]
    time.sleep(1.1)
    client.predict(battle, "A", 1.5, api_name="/listen")
    client.predict(battle, "B", 1.5, api_name="/listen")
    before = _stored(live_app)
    err = _refusal(client, battle, "A", feedback, ratings, api_name="/vote")
    assert "ratings" in err.message or "feedback" in err.message
    assert _stored(live_app) == before
    reveal = client.predict(battle, "A", "", None, api_name="/vote")  # still open: vote works
    assert reveal["battle_id"] == battle


@pytest.mark.parametrize("battle_id", [None, [1], {"id": 1}])
def test_malformed_battle_ids_get_a_titled_message(client, live_app, battle_id) -> None:
    before = _stored(live_app)
    _refusal(client, battle_id, "A", 1.0, api_name="/listen")
    _refusal(client, battle_id, "A", "", None, api_name="/vote")
    assert _stored(live_app) == before


def test_hundred_rapid_battles_hit_the_limit(live_app) -> None:
    from gradio_client.exceptions import AppError

    arena = live_app.services.arena
    default = {f.name: f.default for f in dataclasses.fields(Settings)}["rate_limit_battles"]
    saved = arena.settings
    arena.settings = saved.replace(rate_limit_battles=default)
    client, issued, refusals = _client(live_app), 0, []
    before = _stored(live_app)["battles"]
    try:
        for _ in range(100):
            try:
                client.predict(api_name="/new_battle")
                issued += 1
            except AppError as err:
                refusals.append(err)
    finally:
        arena.settings = saved
    assert refusals and issued <= default < 100
    assert _stored(live_app)["battles"] == before + issued  # refused issues store nothing
    assert refusals[0].title not in ("", "Error")
    assert "start a new battle in" in refusals[0].message


@pytest.fixture
def own_song(tmp_path: Path) -> Path:
    """A song whose bytes no other test run has: gradio stores uploads by content hash in a
    folder other apps on this machine share, and an old app deletes what it scored."""
    from tests.webui.conftest import write_song

    return write_song(tmp_path / "own.wav", seed=secrets.randbits(32))


def test_compare_with_the_same_file_as_a_and_b(client, own_song: Path) -> None:
    from gradio_client import handle_file

    song = own_song
    pair = client.predict(handle_file(str(song)), handle_file(str(song)), api_name="/compare")
    assert pair["a"]["scores"] == pair["b"]["scores"]
    assert pair["p_prefer_a"] == pytest.approx(0.5, abs=1e-6)


def test_two_identical_uploads_at_once_both_score(live_app, own_song: Path) -> None:
    from gradio.utils import get_upload_folder
    from gradio_client import handle_file

    song = own_song
    clients = [_client(live_app) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda c: c.predict(handle_file(str(song)), api_name="/score"), clients)
        )
    for result in results:
        assert set(result["scores"]) == set(SCORE_NAMES)
    assert results[0]["scores"] == results[1]["scores"]
    # Deleted once both were scored.
    assert not list(Path(get_upload_folder()).rglob(song.name))


def test_clip_links_show_no_data_directory_and_change_per_battle(client, live_app) -> None:
    settings = live_app.services.settings
    seen = set()
    for _ in range(3):
        _, audio_a, audio_b = client.predict(api_name="/new_battle")
        for audio in (audio_a, audio_b):
            url = audio["url"] if isinstance(audio, dict) else str(audio)
            assert str(settings.data_dir) not in url and str(settings.pool) not in url
            seen.add(url)
    assert len(seen) == 6  # never the same link twice, even for a clip heard again
