"""About tab: which model and encoder answer, their revisions, and why the demo answers."""

from __future__ import annotations

from webui import about
from webui.services import Services


def test_demo_card_shows_the_exact_reason(settings) -> None:
    services = Services(settings, builders={"store": lambda s, b: "STORE"}).start(background=False)
    reason = (
        "The published APEX model is not available here, so the offline demo model answers. "
        "Reason: published APEX heads amaai-lab/apex (revision abc, files config.json, "
        "pytorch_model.bin): amaai-lab/apex (pytorch_model.bin) does not match ReferenceHeads: "
        "missing keys: branch_clarity.branch.2.weight"
    )
    info = {
        "model_id": "apex-arena-demo",
        "version": "1",
        "kind": "demo",
        "encoder_id": "fallback",
        "encoder_is_fallback": True,
        "is_demo": True,
        "notices": [reason],
    }
    card = about.model_card_markdown(info, services)
    assert f"- **Why the demo answers:** {reason}" in card
    assert "`fallback` (built-in fallback, not MERT)" in card
    assert "revision `" not in card.split("**Why the demo answers:**")[0]


def test_published_card_shows_revisions_and_where_from(settings) -> None:
    services = Services(settings, builders={"store": lambda s, b: "STORE"}).start(background=False)
    info = {
        "model_id": "amaai-lab/apex",
        "version": "epoch-50",
        "kind": "published",
        "revision": "r1",
        "files": ["config.json", "model.safetensors"],
        "from_cache": False,
        "source": "amaai-lab/apex",
        "encoder_id": "m-a-p/MERT-v1-95M",
        "encoder_revision": "r2",
        "notices": [],
    }
    card = about.model_card_markdown(info, services)
    assert "published, revision `r1`, files `config.json`, `model.safetensors`)" in card
    assert "`amaai-lab/apex` (downloaded from the Hub)" in card
    assert "`m-a-p/MERT-v1-95M`, revision `r2`" in card and "**Why the demo answers:**" not in card
