"""The champion on the Hub: a promotion pushes the version and the pointer in one commit; a start
on an empty registry restores it at that exact commit; offline, the published model serves.

The real ``huggingface_hub`` client talks HTTP to the Hub stand-in (:mod:`tests.hub_server`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from apex.checkpoints import save_model
from apex.encoders.fallback import FALLBACK_DIM
from apex.heads import ApexHeads, HeadsConfig
from apex.settings import Settings
from apex.training.registry import POINTER, hub_record, push_version, registry_for, restore_champion
from tests.hub_server import HubServer, point_client_at

REPO = "someone/apex-arena-models"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with HubServer() as server:
        point_client_at(monkeypatch, server)
        yield server


def _promote(settings: Settings, seed: int = 0) -> Path:
    heads = ApexHeads(HeadsConfig(num_layers=1, dim=FALLBACK_DIM, hidden=[8, 4]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in heads.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    registry = registry_for(settings)
    version = registry.new_version()
    save_model(
        heads,
        version,
        metadata={"encoder_id": "fallback", "kind": "custom", "version": version.name},
    )
    (version / "metrics.json").write_text(json.dumps({"gate": {"promote": True}}))
    registry.promote(version)
    return version


def test_a_promotion_pushes_version_and_pointer_in_one_commit(hub, tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "a", model_repo=REPO)
    version = _promote(settings)
    message = push_version(version, REPO)
    assert message.startswith(f"pushed {version.name}"), message
    files = hub.files("model", REPO)
    assert json.loads(files[POINTER])["version"] == version.name
    assert (
        files[f"versions/{version.name}/model.safetensors"]
        == (version / "model.safetensors").read_bytes()
    )
    assert not any(name.endswith("hub.json") for name in files)  # the local record stays local
    commits = hub.commits("model", REPO)
    assert commits[-1][1] == f"Promote {version.name}"
    assert hub_record(version)["revision"] == commits[-1][0]


def test_an_empty_registry_restores_the_champion_at_the_pushed_commit(hub, tmp_path: Path) -> None:
    first = Settings.from_env({}, data_dir=tmp_path / "a", model_repo=REPO)
    v1 = _promote(first, seed=1)
    push_version(v1, REPO)
    pushed_at = hub.commits("model", REPO)[-1][0]

    fresh = Settings.from_env({}, data_dir=tmp_path / "b", model_repo=REPO)
    note = restore_champion(fresh)
    assert note == f"Champion {v1.name} restored from {REPO} at commit {pushed_at[:12]}."
    champion = registry_for(fresh).champion()
    assert champion is not None and champion.name == v1.name
    assert (champion / "model.safetensors").read_bytes() == (v1 / "model.safetensors").read_bytes()
    assert hub_record(champion) | {"at": 0} == {
        "repo_id": REPO,
        "revision": pushed_at,
        "how": "restored",
        "at": 0,
    }
    assert restore_champion(fresh) == ""  # the registry has a champion now: nothing to do

    # A later promotion elsewhere moves the pointer; a new empty registry gets the new one.
    v2 = _promote(first, seed=2)
    push_version(v2, REPO)
    again = Settings.from_env({}, data_dir=tmp_path / "c", model_repo=REPO)
    assert v2.name in restore_champion(again)
    assert registry_for(again).champion().name == v2.name


def test_the_restored_champion_serves(hub, tmp_path: Path) -> None:
    from apex.loader import load_scorer

    first = Settings.from_env({}, data_dir=tmp_path / "a", model_repo=REPO)
    version = _promote(first)
    push_version(version, REPO)
    fresh = Settings.from_env({}, data_dir=tmp_path / "b", model_repo=REPO)
    scorer = load_scorer("auto", settings=fresh)
    info = scorer.info()
    assert info["version"] == version.name and info["kind"] == "custom"
    assert any("restored from" in note for note in info["notices"]), info["notices"]


def test_no_champion_yet_and_unreachable_hub_say_so(
    hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "a", model_repo=REPO)
    assert restore_champion(settings) == f"No champion in {REPO} yet: nothing to restore."
    hub.stop()  # the Hub goes away: nothing cached, nothing restored, the start goes on
    note = restore_champion(settings)
    assert "could not be restored (the Hub cannot be reached)" in note
    assert "the published model serves" in note
    assert registry_for(settings).champion() is None


def test_a_cached_champion_restores_offline(
    hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Settings.from_env({}, data_dir=tmp_path / "a", model_repo=REPO)
    version = _promote(first)
    push_version(version, REPO)
    assert version.name in restore_champion(Settings.from_env({}, data_dir=tmp_path / "b",
                                                              model_repo=REPO))  # fmt: skip
    hub.stop()  # the download is in the Hugging Face cache: a data-dir wipe restores offline
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    fresh = Settings.from_env({}, data_dir=tmp_path / "c", model_repo=REPO)
    assert version.name in restore_champion(fresh)
    assert registry_for(fresh).champion().name == version.name


def test_a_failed_push_says_the_version_is_only_local(hub, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.utils._auth.get_token", lambda: None, raising=False)
    settings = Settings.from_env({}, data_dir=tmp_path / "a", model_repo=REPO)
    version = _promote(settings)
    message = push_version(version, REPO)
    assert "failed" in message and "kept locally" in message, message
    assert hub_record(version) is None
