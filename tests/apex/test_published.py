"""The published APEX heads and MERT from replicas of the real Hub repos in a preloaded HF cache.

``tests/apex/hub_replicas.py`` builds the replicas (real file names, config keys and values,
state-dict key names; random weights) in the ``preload_from_hub`` cache layout. With the Hub
offline and ``APEX_MODEL=auto`` the scorer must serve them, not the demo, and its seven scores
must equal an independent forward of the published pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from apex.checkpoints import CheckpointError, load_model
from apex.published import load_published
from apex.settings import Settings
from tests.apex import hub_replicas as hr


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache that huggingface_hub uses for this test, with the Hub offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture(scope="module")
def demo_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """``APEX_MODEL=auto`` settings whose demo model (the fallback) is built once, small."""
    from apex.demo import model as demo_model

    settings = Settings.from_env(
        {"APEX_MODEL": "auto"}, data_dir=tmp_path_factory.mktemp("pub"), demo_clips=16
    )
    demo_model.ensure_demo_model(settings)  # 16 demo clips keep it quick
    yield settings


def _song(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24_000)) / 24_000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.5 * (t % 2)))
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _seed42_mix() -> tuple[list[float], float]:
    torch.manual_seed(42)
    conv = nn.Conv1d(4, 1, kernel_size=1)
    return conv.weight.detach().flatten().tolist(), float(conv.bias.detach()[0])


def test_auto_serves_the_published_replica_and_matches_an_independent_forward(
    hub_cache: Path, tmp_path: Path
) -> None:
    from apex import load_scorer

    built = hr.build_cache(hub_cache, tmp_path)
    settings = Settings.from_env({"APEX_MODEL": "auto"}, data_dir=tmp_path / "data")
    scorer = load_scorer(settings.model, precision="reference", device="cpu", settings=settings)
    info = scorer.info()
    assert (info["model_id"], info["kind"], info["is_demo"]) == (hr.APEX_REPO, "published", False)
    assert (info["encoder_id"], info["encoder_is_fallback"]) == (hr.MERT_REPO, False)
    assert (info["revision"], info["encoder_revision"]) == (hr.APEX_REVISION, hr.MERT_REVISION)
    assert info["version"] == "epoch-50" and info["notices"] == []
    wave = _song(35.0)  # two segments, the second zero-padded
    result = scorer.score((wave, 24_000))[0]
    hidden = hr.independent_hidden(
        built["mert_config"], built["mert_state"], torch.from_numpy(wave)
    )
    want = hr.independent_scores(built["apex_config"], built["apex_state"], hidden)
    diff = max(abs(result.scores[k] - want[k]) for k in hr.TASKS)
    print(
        f"\nreplica: model {result.model_id}@{result.model_revision} encoder "
        f"{result.encoder_id}@{result.encoder_revision} max |score - independent| = {diff:.3g}"
    )
    assert set(result.scores) == set(hr.TASKS)
    assert diff < 1e-4, (result.scores, want)
    assert not result.is_demo and result.model_revision == hr.APEX_REVISION
    spread = max(want.values()) - min(want.values())
    assert spread > 1.0  # not saturated: the comparison can fail


VARIANTS = {
    "bin-bare-aggregator-depth2": dict(),
    "bin-bare-no-aggregator": dict(aggregator=False),
    "bin-wrapped": dict(wrap=True),
    "bin-wrapped-no-aggregator-depth3": dict(wrap=True, aggregator=False, depth3=True),
    "bin-model-prefix": dict(prefix="model."),
    "bin-apex-prefix-depth3": dict(prefix="apex.", depth3=True),
    "safetensors": dict(safetensors=True),
    "safetensors-prefix-no-aggregator": dict(safetensors=True, prefix="model.", aggregator=False),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_plausible_published_layout_loads_exactly(
    variant: str, hub_cache: Path, tmp_path: Path
) -> None:
    opts = dict(VARIANTS[variant])
    depth3, aggregator = opts.pop("depth3", False), opts.pop("aggregator", True)
    config = hr.apex_config(**({"shared_dims": [512, 384, 256]} if depth3 else {}))
    state = hr.apex_state(config, seed=3, aggregator=aggregator)
    files = hr.apex_files(config, state, tmp_path, **opts)
    hr.write_cache_repo(hub_cache, hr.APEX_REPO, files, hr.APEX_REVISION)
    heads, info = load_published(hr.APEX_REPO, local_files_only=True)
    assert heads.shared_depth == (3 if depth3 else 2)
    assert info.encoder_id == hr.MERT_REPO and info.revision == hr.APEX_REVISION
    weights = "model.safetensors" if opts.get("safetensors") else "pytorch_model.bin"
    meta = info.metadata["published_checkpoint"]
    assert meta["weights_file"] == weights
    assert ("aggregator" in meta["layer_mix"]) == aggregator
    hidden = torch.randn(
        2, 13, 768, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    with torch.no_grad():
        got = heads.double()(hidden[None])
    want = hr.independent_scores(config, state, hidden, mix=_seed42_mix())
    for task in hr.TASKS:
        assert float(got[task][0]) == pytest.approx(want[task], abs=1e-9), task
    # The same repo loads through load_model (APEX_MODEL=amaai-lab/apex), as does a local copy.
    via_hub, hub_info = load_model(hr.APEX_REPO, local_files_only=True)
    assert (hub_info.model_id, hub_info.revision, hub_info.kind) == (
        hr.APEX_REPO,
        hr.APEX_REVISION,
        "published",
    )
    via_dir, _ = load_model(hub_cache / "models--amaai-lab--apex" / "snapshots" / hr.APEX_REVISION)
    for loaded in (via_hub, via_dir):
        assert torch.equal(loaded.double()(hidden[None])["clarity"], got["clarity"])


def test_real_size_replica_matches_the_published_file(hub_cache: Path, tmp_path: Path) -> None:
    """The inferred key list reproduces the real pytorch_model.bin: 126 tensors, 3.33 MB."""
    config = hr.apex_config()
    state = hr.apex_state(config, aggregator=False)
    files = hr.apex_files(config, state, tmp_path)
    assert len(state) == 126
    assert abs(len(files["pytorch_model.bin"]) - 3.33e6) < 0.02e6, len(files["pytorch_model.bin"])
    hr.write_cache_repo(hub_cache, hr.APEX_REPO, files, hr.APEX_REVISION)
    heads, _ = load_published(local_files_only=True)
    assert set(heads.state_dict()) == set(state)


def _broken(kind: str, state: dict, files: dict) -> str:
    """Break one replica in place; return the text the error must contain."""
    if kind == "renamed":
        state["branch_clarity.branch.2.weights"] = state.pop("branch_clarity.branch.2.weight")
        return "branch_clarity.branch.2.weight"
    if kind == "shape":
        state["shared.1.block.0.weight"] = torch.zeros(256, 500)
        return "shared.1.block.0.weight"
    blob = files["pytorch_model.bin"]
    files["pytorch_model.bin"] = blob[: len(blob) // 2]
    return "truncated"


@pytest.mark.parametrize("kind", ["renamed", "shape", "truncated"])
def test_broken_replica_fails_loudly_and_the_demo_says_why(
    kind: str, hub_cache: Path, tmp_path: Path, demo_settings: Settings
) -> None:
    from apex import load_scorer

    config = hr.apex_config(input_dim=hr.MERT_TEST_SIZE["hidden_size"])
    state = hr.apex_state(config)
    files = hr.apex_files(config, state, tmp_path)
    needle = _broken(kind, state, files)
    if kind != "truncated":
        files = hr.apex_files(config, state, tmp_path)
    built = hr.build_cache(hub_cache, tmp_path, apex=files)
    assert built["apex_snapshot"].is_dir()
    with pytest.raises(CheckpointError) as err:
        load_published(local_files_only=True)
    message = str(err.value)
    assert needle in message and "pytorch_model.bin" in message, message
    if kind == "renamed":
        assert "missing keys: branch_clarity.branch.2.weight" in message
        assert "unexpected keys: branch_clarity.branch.2.weights" in message
    scorer = load_scorer(demo_settings.model, settings=demo_settings)
    info = scorer.info()
    assert info["is_demo"]
    reason = next(n for n in info["notices"] if "published APEX model is not available" in n)
    assert needle in reason and hr.APEX_REPO in reason, reason
    result = scorer.score((_song(3.0), 24_000))[0]
    assert result.is_demo and any(needle in w for w in result.warnings)


def test_missing_pieces_are_named(hub_cache: Path, tmp_path: Path) -> None:
    config = hr.apex_config()
    files = hr.apex_files(config, hr.apex_state(config), tmp_path)
    without_weights = {k: v for k, v in files.items() if k != "pytorch_model.bin"}
    hr.write_cache_repo(hub_cache, hr.APEX_REPO, without_weights, hr.APEX_REVISION)
    with pytest.raises(CheckpointError, match=r"config\.json but no model\.safetensors or py"):
        load_published(local_files_only=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    (other / "pytorch_model.bin").write_bytes(files["pytorch_model.bin"])
    with pytest.raises(CheckpointError, match="model_type 'bert' is not 'apex'"):
        load_published(other)
    for key, value, needle in (("segment_sec", 10, "segment_sec 10"), ("seed", 7, "seed 7")):
        state = hr.apex_state(config, aggregator=False)
        (other / "config.json").write_text(json.dumps({**config, key: value}))
        torch.save(state, other / "pytorch_model.bin")
        with pytest.raises(CheckpointError, match=needle):
            load_published(other)
    with pytest.raises(CheckpointError, match=r"not in the local Hugging Face cache.*offline"):
        load_published("amaai-lab/not-cached", local_files_only=True)


def test_reference_pt_layout_is_found_by_listing(hub_cache: Path, tmp_path: Path) -> None:
    from apex.heads import ReferenceHeads

    source = ReferenceHeads(task="full", shared=3)
    payload = {"model_state": source.state_dict(), "task": "full", "shared": 3, "epoch": 9}
    torch.save(payload, tmp_path / "ref.pt")
    files = {"models/best_model.pt": (tmp_path / "ref.pt").read_bytes(), "README.md": b"# ref\n"}
    hr.write_cache_repo(hub_cache, hr.APEX_REPO, files, hr.APEX_REVISION)
    heads, info = load_published(local_files_only=True)
    assert info.version == "epoch-9" and info.revision == hr.APEX_REVISION
    assert info.metadata["files"] == ["models/best_model.pt"]
    x = torch.randn(2, 13, 768)
    assert torch.equal(heads(x)["coherence"], source(x)["coherence"])


def test_cached_repo_never_touches_the_network(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Network allowed but everything cached: no probe, no listing call, no download."""
    import socket

    from huggingface_hub import HfApi, constants

    from apex.encoders import MertEncoder

    hr.build_cache(hub_cache, tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def no_network(*args, **kwargs):
        raise AssertionError("the Hub was contacted although the repo is cached")

    monkeypatch.setattr(HfApi, "model_info", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)  # not even the probe
    _, info = load_published(local_files_only=False)
    assert info.metadata["from_cache"] is True
    encoder = MertEncoder.from_pretrained(hr.MERT_REPO, local_files_only=False, device="cpu")
    assert encoder.revision == hr.MERT_REVISION and encoder.encoder_id == hr.MERT_REPO


def test_uncached_mert_downloads_only_the_needed_files(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not cached, network allowed: list the repo, then fetch only what loading needs.

    The Hub itself is the one stand-in (this machine cannot reach it): ``model_info`` answers
    with the real repo's listing and ``snapshot_download`` writes the replica's files for the
    patterns asked, exactly into the cache layout.
    """
    import huggingface_hub
    from huggingface_hub import HfApi, constants
    from huggingface_hub.hf_api import ModelInfo

    from apex import hub_files
    from apex.encoders import MertEncoder

    config = hr.mert_config()
    replica = hr.mert_files(config, hr.mert_state(config), tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    asked: list[list[str]] = []
    real_snapshot_download = huggingface_hub.snapshot_download

    def model_info(self, repo_id, **kwargs):
        siblings = [{"rfilename": n} for n in hr.MERT_LISTING]  # the API's JSON
        return ModelInfo(id=repo_id, sha=hr.MERT_REVISION, siblings=siblings)

    def snapshot_download(repo_id, *, local_files_only=False, allow_patterns=None, **kwargs):
        if local_files_only:
            return real_snapshot_download(
                repo_id, local_files_only=True, allow_patterns=allow_patterns
            )
        asked.append(list(allow_patterns))
        files = {n: replica[n] for n in allow_patterns}
        return str(hr.write_cache_repo(hub_cache, repo_id, files, kwargs["revision"]))

    monkeypatch.setattr(hub_files, "hub_reachable", lambda: True)
    monkeypatch.setattr(HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    encoder = MertEncoder.from_pretrained(hr.MERT_REPO, local_files_only=False, device="cpu")
    assert asked == [["config.json", "pytorch_model.bin", "preprocessor_config.json"]]
    assert encoder.revision == hr.MERT_REVISION and encoder.dim == 32
    # Second start: cached now, so no listing and no download.
    encoder = MertEncoder.from_pretrained(hr.MERT_REPO, local_files_only=False, device="cpu")
    assert len(asked) == 1


def test_real_mert_config_maps_to_inference_hubert() -> None:
    from apex.encoders.hubert import hubert_config_from_dict

    raw = hr.real_config("mert-v1-95m/config.json")
    assert len(raw) == 54 and raw["transformers_version"] == "4.24.0"
    assert (raw["layerdrop"], raw["mask_time_prob"], raw["feat_proj_dropout"]) == (0.05, 0.05, 0.1)
    config = hubert_config_from_dict(raw)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        768,
        12,
        12,
    )
    assert list(config.conv_stride) == [5, 2, 2, 2, 2, 2, 2] and config.conv_bias is False
    assert config.feat_extract_norm == "group" and config.feat_proj_layer_norm is True
    assert config.layerdrop == 0.0
    for name in ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout"):
        assert getattr(config, name) == 0.0, name
    assert config.mask_time_prob == 0.05  # keeps masked_spec_embed's slot; unused in eval


def test_real_preprocessor_config_is_honoured(hub_cache: Path, tmp_path: Path) -> None:
    """``do_normalize false``: the waveform goes in as is; the all-ones attention mask of a
    full padded segment changes nothing."""
    from apex.encoders import MertEncoder

    built = hr.build_cache(hub_cache, tmp_path)
    encoder = MertEncoder.from_pretrained(
        hr.MERT_REPO, local_files_only=True, precision="reference", device="cpu"
    )
    assert encoder.do_normalize is False and encoder.sample_rate == 24_000
    seg = torch.from_numpy(_song(30.0))[None]
    with torch.inference_mode():
        plain = encoder.model(seg, output_hidden_states=True).hidden_states[-1]
        masked = encoder.model(
            seg, attention_mask=torch.ones_like(seg, dtype=torch.long), output_hidden_states=True
        ).hidden_states[-1]
    assert torch.allclose(plain, masked, atol=1e-5) and not torch.isnan(masked).any()
    loaded = encoder.model.state_dict()
    g = built["mert_state"]["encoder.pos_conv_embed.conv.weight_g"]
    assert torch.equal(loaded["encoder.pos_conv_embed.conv.parametrizations.weight.original0"], g)
    assert torch.equal(loaded["masked_spec_embed"], built["mert_state"]["masked_spec_embed"])


@pytest.mark.slow
def test_full_size_mert_95m_replica_loads(hub_cache: Path, tmp_path: Path) -> None:
    """The real config at full size (random weights): 95M parameters from pytorch_model.bin."""
    from apex.encoders import MertEncoder

    config = hr.mert_config(full_size=True)
    state = hr.mert_state(config)
    v = state["encoder.pos_conv_embed.conv.weight_v"]
    assert tuple(v.shape) == (768, 48, 128)
    assert tuple(state["encoder.pos_conv_embed.conv.weight_g"].shape) == (1, 1, 128)
    hr.write_cache_repo(
        hub_cache, hr.MERT_REPO, hr.mert_files(config, state, tmp_path), hr.MERT_REVISION
    )
    encoder = MertEncoder.from_pretrained(
        hr.MERT_REPO, local_files_only=True, precision="reference", device="cpu"
    )
    assert (encoder.num_layers, encoder.dim, encoder.revision) == (13, 768, hr.MERT_REVISION)
    loaded = encoder.model.state_dict()
    assert torch.equal(loaded["encoder.pos_conv_embed.conv.parametrizations.weight.original1"], v)
    assert torch.equal(
        loaded["encoder.layers.11.final_layer_norm.weight"],
        state["encoder.layers.11.final_layer_norm.weight"],
    )
    assert encoder.model.config.layerdrop == 0.0 and not encoder.model.training


def test_hub_errors_are_the_hubs_not_any_value_error() -> None:
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    from apex.hub_files import hub_errors

    expected = hub_errors()
    assert issubclass(HFValidationError, expected)  # an invalid repo id: "cannot have it"
    assert issubclass(RepositoryNotFoundError, expected)
    assert issubclass(ConnectionError, expected)  # offline mode, refused connections
    assert not issubclass(ValueError, expected)  # any other ValueError is a bug: it surfaces
    assert not issubclass(KeyError, expected)
