"""The page (:mod:`webui.layout`): named endpoints and their queue limits."""

from __future__ import annotations

from webui.services import Services


def test_ui_exposes_named_endpoints_with_limits(settings) -> None:
    from webui import build_ui

    services = Services(settings.replace(score_concurrency=2), builders={})
    demo = build_ui(services)
    named = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert {"score", "compare", "new_battle", "listen", "vote", "leaderboard"} <= set(named)
    assert named["score"].concurrency_limit == 2
    assert named["vote"].concurrency_limit > named["score"].concurrency_limit
    assert named["vote"].concurrency_id == named["new_battle"].concurrency_id
