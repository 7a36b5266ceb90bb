"""Who is voting: the proxy-appended address (a forged X-Forwarded-For changes nothing), and the
optional Hugging Face sign-in through Gradio's own OAuth path, with no network.

Sign-in: outside a Space Gradio serves *mocked* ``/login/huggingface`` and ``/login/callback``
routes that put ``gradio.oauth._get_mocked_oauth_info()`` (normally the machine's own
``hf auth login``, fetched from the Hub) into the signed session cookie, and injects it into
handlers as ``gr.OAuthProfile``. The test replaces only that one network-bound lookup with a
fixed profile; the routes, the session middleware, the cookie and the injection are Gradio's.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import gradio as gr
import httpx
import pytest
from starlette.requests import Request

from annotation.identity import Pseudonymizer, client_address
from apex.settings import Settings
from tests.webui.conftest import arena_services, free_port
from webui import arena as ui
from webui.services import Services

#: On a Space the app's TCP peer is the front end's internal address (reported as e.g.
#: 10.16.3.80 in embeddings-benchmark/mteb PR #4754); the visitor arrives in X-Forwarded-For.
PROXY = "10.16.3.80"


def test_client_address_reads_the_hop_the_trusted_proxy_appended() -> None:
    assert client_address("203.0.113.5", PROXY, 1) == "203.0.113.5"
    # The client wrote the first hop itself; the proxy appended the real address.
    assert client_address("6.6.6.6, 203.0.113.5", PROXY, 1) == "203.0.113.5"
    assert client_address("6.6.6.6, 203.0.113.5, 10.1.1.1", PROXY, 2) == "203.0.113.5"
    assert client_address("6.6.6.6", PROXY, 0) == PROXY  # no proxy trusted: the peer
    assert client_address(None, PROXY, 1) == PROXY  # did not come through the proxy
    assert client_address("203.0.113.5", PROXY, 2) == PROXY  # fewer hops than proxies
    assert client_address(" 2001:DB8::1 ", None, 1) == "2001:db8::1"  # one spelling, one voter
    with pytest.raises(ValueError, match=">= 0"):
        client_address("1.2.3.4", PROXY, -1)


def request(forwarded: str | None, session: str) -> gr.Request:
    """A real Starlette request as the app behind the Space proxy receives it."""
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {
        "type": "http", "method": "POST", "path": "/", "query_string": b"",
        "headers": headers, "client": (PROXY, 443),
    }  # fmt: skip
    return gr.Request(request=Request(scope), session_hash=session)


@pytest.fixture
def services(tmp_path: Path, settings):
    settings = settings.replace(
        salt="t", min_listen_s=0.0, rate_limit_votes=2, rate_limit_window_s=600.0, trusted_proxies=1
    )
    built = arena_services(settings, tmp_path / "pool", ("s0", "s1", "s2"), clips=4)
    yield built
    built.close()


def vote_as(services: Services, forwarded: str | None, profile=None) -> dict:
    req = request(forwarded, uuid.uuid4().hex)  # a fresh browser session every time
    info, _, _ = ui.new_battle(services, req)
    return ui.cast_vote(services, info["battle_id"], "A", None, None, req, profile)


def test_a_forged_forwarded_for_cannot_escape_the_rate_limit(services) -> None:
    for _ in range(2):
        vote_as(services, f"{uuid.uuid4().hex[:8]}, 198.51.100.20")
    with pytest.raises(gr.Error, match="limit 2"):
        vote_as(services, "1.1.1.1, 198.51.100.20")  # a new forged hop, same real address
    with pytest.raises(gr.Error, match="limit 2"):
        vote_as(services, "198.51.100.99,198.51.100.20")
    vote_as(services, "198.51.100.20, 198.51.100.21")  # another visitor: their own limit
    votes = services.store.votes_frame()
    assert votes["user_pseudonym"].nunique() == 2 and not votes["signed_in"].any()


def test_trusted_proxies_default_to_one_only_on_a_space(monkeypatch) -> None:
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert Settings.from_env({}).trusted_proxies == 0
    monkeypatch.setenv("SPACE_ID", "owner/apex-arena")
    assert Settings.from_env({}).trusted_proxies == 1
    assert Settings.from_env({"APEX_TRUSTED_PROXIES": "2"}).trusted_proxies == 2


@pytest.mark.parametrize("space", [False, True], ids=["reached-directly", "on-a-space"])
def test_forged_forwarded_for_does_not_change_the_voter_by_default(
    tmp_path: Path, monkeypatch, space: bool
) -> None:
    """Default settings: reached directly, the client's own header is ignored; on a Space, the
    proxy appends the peer's address and only that hop is read."""
    if space:
        monkeypatch.setenv("SPACE_ID", "owner/apex-arena")
    else:
        monkeypatch.delenv("SPACE_ID", raising=False)
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", salt="t", min_listen_s=0.0, rate_limit_votes=100
    )
    built = arena_services(settings, tmp_path / "pool", ("s0", "s1"), clips=4)
    try:
        for forged in ("6.6.6.6", "7.7.7.7, 8.8.8.8", None):
            # Reached directly, the header is all the client's; behind the Space's proxy it
            # ends with the visitor's address, which the proxy appended.
            hops = [forged] if forged else []
            vote_as(built, ", ".join([*hops, "198.51.100.20"]) if space else forged)
        voters = set(built.store.votes_frame()["user_pseudonym"])
    finally:
        built.close()
    assert len(voters) == 1  # each forged header would otherwise be another voter


def test_signed_in_votes_are_keyed_and_limited_per_account(services) -> None:
    profile = gr.OAuthProfile(
        {"sub": "63f0a", "name": "A", "preferred_username": "a", "profile": "", "picture": ""}
    )
    for forwarded in ("198.51.100.1", "198.51.100.2"):  # one account, two places
        vote_as(services, forwarded, profile)
    with pytest.raises(gr.Error, match="limit 2"):
        vote_as(services, "198.51.100.3", profile)
    vote_as(services, "198.51.100.1")  # the same address anonymously is another voter
    votes = services.store.votes_frame()
    signed = votes[votes["signed_in"]]
    assert len(signed) == 2
    assert set(signed["user_pseudonym"]) == {Pseudonymizer("t").account("63f0a")}
    assert "63f0a" not in "".join(votes["user_pseudonym"])


def test_signin_is_off_offline_unless_asked(settings, monkeypatch) -> None:
    monkeypatch.delenv("SYSTEM", raising=False)
    assert not ui.signin_enabled(settings)  # auto, not on a Space
    assert ui.signin_enabled(settings.replace(signin="on"))
    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "owner/apex-arena")
    monkeypatch.setenv("OAUTH_CLIENT_ID", "x")
    assert ui.signin_enabled(settings)
    assert not ui.signin_enabled(settings.replace(signin="off"))


MOCK_PROFILE = {
    "access_token": "mock-oauth-token-for-tests",
    "token_type": "bearer",
    "expires_in": 3600,
    "scope": "openid profile",
    "expires_at": 9_999_999_999,
    "userinfo": {
        "sub": "6500aa11bb22cc33dd44ee55",
        "name": "Test Voter",
        "preferred_username": "test-voter",
        "profile": "https://huggingface.co/test-voter",
        "picture": "",
    },
}


def test_login_through_gradio_mocked_oauth_routes(services, monkeypatch) -> None:
    import gradio.oauth
    from gradio_client import Client

    from webui import build_ui

    monkeypatch.setattr(gradio.oauth, "_get_mocked_oauth_info", lambda: MOCK_PROFILE)
    services.settings = services.settings.replace(signin="on", port=free_port())
    demo = build_ui(services)
    assert demo.expects_oauth  # the LoginButton is on the page
    demo.launch(server_port=services.settings.port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{services.settings.port}"
    try:
        with httpx.Client(base_url=url) as http:
            login = http.get("/login/huggingface", follow_redirects=False)
            assert login.status_code in (302, 307)
            callback = http.get(login.headers["location"], follow_redirects=False)
            # Gradio's session cookie is Secure (https only); over this plain-http test server
            # it is sent back by hand, as a browser on the Space's https would.
            cookie = callback.cookies.get("session")
            assert cookie
        signed = Client(url, headers={"Cookie": f"session={cookie}"}, verbose=False)
        anonymous = Client(url, verbose=False)
        for client in (signed, anonymous):
            info, _, _ = client.predict(api_name="/new_battle")
            client.predict(info["battle_id"], "A", "", None, api_name="/vote")
    finally:
        demo.close()
    votes = services.store.votes_frame().sort_values("row_id")
    assert votes["signed_in"].tolist() == [True, False]
    account = Pseudonymizer("t").account(MOCK_PROFILE["userinfo"]["sub"])
    assert votes["user_pseudonym"].iloc[0] == account
    assert votes["user_pseudonym"].iloc[1] != account
