"""Arena handlers (:mod:`webui.arena`) without a server: the prompt of an issued battle."""

from __future__ import annotations

from types import SimpleNamespace

from webui import arena


class _Store:
    """Holds one recorded battle, ``b1``."""

    def get_battle(self, battle_id: str) -> SimpleNamespace | None:
        return SimpleNamespace(prompt="lofi piano") if battle_id == "b1" else None


def test_battle_prompt_comes_from_the_ticket_or_the_recorded_battle() -> None:
    server = SimpleNamespace(store=_Store())
    with_prompt = SimpleNamespace(battle_id="b1", prompt="jazz trio")
    assert arena.battle_prompt(server, with_prompt) == "jazz trio"  # the ticket wins
    assert arena.battle_prompt(server, SimpleNamespace(battle_id="b1")) == "lofi piano"
    assert arena.battle_prompt(server, SimpleNamespace(battle_id="gone")) == ""
