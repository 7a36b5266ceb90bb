"""Replicas of ``amaai-lab/apex`` and ``m-a-p/MERT-v1-95M`` in their real layouts, for tests.

Built from the real configs copied in ``tests/data/hub_reference`` (see its README): same file
names, same config keys and values, same state-dict key names, random weights. They are written
into a Hugging Face cache folder exactly as a Space's ``preload_from_hub`` lays it out:
``models--<owner>--<name>/blobs/<etag>``, ``snapshots/<revision>/<file>`` (a relative symlink to
its blob) and ``refs/main`` (the revision, no newline). Blob names follow the Hub's etags: the
git blob sha1 of a small file, the sha256 of an LFS file (weights).

The MERT replica is the real config at test size, through the config's own keys (``hidden_size``
32, ``intermediate_size`` 64, ``num_attention_heads`` 4, ``conv_dim`` 16 x 7); every other value,
12 layers and the 128-wide positional convolution included, is the real one. The APEX replica then
uses ``input_dim`` 32 to fit it; the rest of its config is the real one.

Also here: an independent forward of the published pipeline (HuBERT from transformers, then the
published MLP formula written out with plain tensor ops), to compare the app's scores against.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "hub_reference"
APEX_REPO, MERT_REPO = "amaai-lab/apex", "m-a-p/MERT-v1-95M"
APEX_REVISION = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
MERT_REVISION = "0f1e2d3c4b5a69788796a5b4c3d2e1f001234567"
TASKS = (
    "score_streams",
    "score_likes",
    "coherence",
    "musicality",
    "memorability",
    "clarity",
    "naturalness",
)
#: Output range per task: sigmoid * 100 for engagement, sigmoid * 4 + 1 for aesthetics.
RANGES = {t: (0.0, 100.0) if t.startswith("score_") else (1.0, 5.0) for t in TASKS}
MERT_TEST_SIZE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "conv_dim": [16] * 7,
}
SEGMENT_SAMPLES = 30 * 24_000


def real_config(name: str) -> dict[str, Any]:
    """A real config copied from the Hub: ``amaai-lab-apex/config.json`` etc."""
    return json.loads((REFERENCE / name).read_text())


# ---------------------------------------------------------------------------- cache layout
def _etag(content: bytes, lfs: bool) -> str:
    if lfs:
        return hashlib.sha256(content).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def write_cache_repo(cache: Path, repo_id: str, files: dict[str, bytes], revision: str) -> Path:
    """Write ``files`` as ``repo_id`` at ``revision`` into the HF cache ``cache``; returns the
    snapshot folder. Weights (``.bin``, ``.safetensors``, ``.pt``) are stored as LFS blobs."""
    owner, name = repo_id.split("/")
    root = cache / f"models--{owner}--{name}"
    snapshot = root / "snapshots" / revision
    for rel, content in files.items():
        lfs = rel.endswith((".bin", ".safetensors", ".pt"))
        blob = root / "blobs" / _etag(content, lfs)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return snapshot


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _torch_bytes(obj: Any, path: Path) -> bytes:
    torch.save(obj, path)
    return path.read_bytes()


# ---------------------------------------------------------------------------- APEX replica
def apex_config(**overrides: Any) -> dict[str, Any]:
    """The real ``amaai-lab/apex`` config with ``overrides`` (``input_dim`` for test-size MERT)."""
    return {**real_config("amaai-lab-apex/config.json"), **overrides}


def apex_state(config: dict[str, Any], seed: int = 0, aggregator: bool = True) -> dict:
    """Random tensors under the published key names, spelled out from the module structure:
    ``shared.<i>.block.{0: Linear, 1: BatchNorm1d}``, ``branch_<task>.branch.<j>.block...`` and
    ``branch_<task>.branch.<last>`` (Linear to 1), optionally ``aggregator.weight/bias``."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def block(prefix: str, n_in: int, n_out: int) -> None:
        state[f"{prefix}.block.0.weight"] = torch.randn(n_out, n_in, generator=gen) / n_in**0.5
        state[f"{prefix}.block.0.bias"] = 0.1 * torch.randn(n_out, generator=gen)
        state[f"{prefix}.block.1.weight"] = 1 + 0.1 * torch.randn(n_out, generator=gen)
        state[f"{prefix}.block.1.bias"] = 0.1 * torch.randn(n_out, generator=gen)
        state[f"{prefix}.block.1.running_mean"] = 0.1 * torch.randn(n_out, generator=gen)
        state[f"{prefix}.block.1.running_var"] = 0.5 + torch.rand(n_out, generator=gen)
        state[f"{prefix}.block.1.num_batches_tracked"] = torch.tensor(1000)

    widths = [config["input_dim"], *config["shared_dims"]]
    for i in range(len(config["shared_dims"])):
        block(f"shared.{i}", widths[i], widths[i + 1])
    branch = [config["shared_dims"][-1], *config["branch_dims"]]
    for task in TASKS:
        for j in range(len(config["branch_dims"])):
            block(f"branch_{task}.branch.{j}", branch[j], branch[j + 1])
        last = len(config["branch_dims"])
        state[f"branch_{task}.branch.{last}.weight"] = torch.randn(1, branch[-1], generator=gen)
        state[f"branch_{task}.branch.{last}.bias"] = 0.1 * torch.randn(1, generator=gen)
    if aggregator:
        n = len(config["layer_indices"])
        state["aggregator.weight"] = torch.randn(1, n, 1, generator=gen) / 2
        state["aggregator.bias"] = 0.1 * torch.randn(1, generator=gen)
    return state


def apex_files(
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    tmp: Path,
    *,
    wrap: bool = False,
    prefix: str = "",
    safetensors: bool = False,
) -> dict[str, bytes]:
    """The repo's files: config.json, the weights, the remote code and the model card.

    The remote-code files raise if anything imports them: loading must never run them.
    """
    saved = {f"{prefix}{k}": v.contiguous() for k, v in state.items()}
    if safetensors:
        from safetensors.torch import save_file

        save_file(saved, str(tmp / "w.safetensors"))
        weights = {"model.safetensors": (tmp / "w.safetensors").read_bytes()}
    else:
        payload = {"model_state": saved} if wrap else saved
        weights = {"pytorch_model.bin": _torch_bytes(payload, tmp / "w.bin")}
    trap = b'raise RuntimeError("the remote code of amaai-lab/apex must never run")\n'
    return {
        ".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# APEX\n",
        "__init__.py": trap,
        "configuration_apex.py": trap,
        "modeling_apex.py": trap,
        "config.json": _json(config),
        **weights,
    }


# ---------------------------------------------------------------------------- MERT replica
def mert_config(full_size: bool = False) -> dict[str, Any]:
    """The real MERT-v1-95M config, at test size unless ``full_size``."""
    config = real_config("mert-v1-95m/config.json")
    return config if full_size else {**config, **MERT_TEST_SIZE}


def _hubert_config(config: dict[str, Any]) -> Any:
    from transformers import HubertConfig

    fields = set(HubertConfig().to_dict())
    return HubertConfig(**{k: v for k, v in config.items() if k in fields and k != "model_type"})


def mert_state(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random HuBERT weights under MERT's ``pytorch_model.bin`` names (old torch weight norm:
    ``weight_g``/``weight_v``; ``masked_spec_embed`` included).

    At test size: transformers' own random init. At full size (95M) that init takes 3-10 s on a
    busy CPU, so the tensors are drawn directly from N(0, 0.02) instead (a load test only)."""
    from transformers import HubertModel
    from transformers.initialization import no_init_weights

    torch.manual_seed(seed)
    if config["hidden_size"] <= MERT_TEST_SIZE["hidden_size"]:
        model = HubertModel(_hubert_config(config))
    else:
        with no_init_weights():
            model = HubertModel(_hubert_config(config))
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.normal_(0.0, 0.02)
    state = {}
    for key, tensor in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        state[key] = tensor
    assert "masked_spec_embed" in state and "encoder.pos_conv_embed.conv.weight_g" in state
    return state


#: What the Space README's ``preload_from_hub`` line fetches of MERT (never the fairseq .pt).
MERT_PRELOAD = ("config.json", "preprocessor_config.json", "pytorch_model.bin")
#: The real repo's listing on ``main`` (``../shared/reference/README.md``).
MERT_LISTING = (
    ".gitattributes",
    "MERT-v1-95M_fairseq.pt",
    "README.md",
    "config.json",
    "configuration_MERT.py",
    "modeling_MERT.py",
    "preprocessor_config.json",
    "pytorch_model.bin",
)


def mert_files(config: dict[str, Any], state: dict[str, torch.Tensor], tmp: Path) -> dict:
    """The preloaded files: config.json, preprocessor_config.json, pytorch_model.bin."""
    preprocessor = REFERENCE / "mert-v1-95m" / "preprocessor_config.json"
    return {
        "config.json": _json(config),
        "preprocessor_config.json": preprocessor.read_bytes(),
        "pytorch_model.bin": _torch_bytes(state, tmp / "mert.bin"),
    }


# ---------------------------------------------------------------------------- independent forward
def independent_hidden(config: dict[str, Any], state: dict, waveform: torch.Tensor) -> torch.Tensor:
    """MERT per 30 s segment (last zero-padded), every hidden state averaged over all frames,
    as the reference's ``inference.py`` does: ``[S, 13, D]`` (float64)."""
    from transformers import HubertModel

    model = HubertModel(_hubert_config(config)).eval()
    renamed = {
        k.replace("weight_g", "parametrizations.weight.original0").replace(
            "weight_v", "parametrizations.weight.original1"
        ): v
        for k, v in state.items()
    }
    model.load_state_dict(renamed, strict=True)
    n_seg = math.ceil(waveform.numel() / SEGMENT_SAMPLES)
    padded = torch.zeros(n_seg * SEGMENT_SAMPLES)
    padded[: waveform.numel()] = waveform
    out = []
    with torch.inference_mode():
        for seg in padded.view(n_seg, SEGMENT_SAMPLES):
            hidden = model(seg[None], output_hidden_states=True).hidden_states
            out.append(torch.stack([h[0].double().mean(dim=0) for h in hidden]))
    return torch.stack(out)


def independent_scores(
    config: dict[str, Any], state: dict, hidden: torch.Tensor, mix: tuple | None = None
) -> dict[str, float]:
    """The published MLP formula on pooled hidden states ``[S, 13, D]``, in float64.

    ``mix``: (weight [L], bias) when the state has no aggregator (the seed-42 draw). Per segment
    the picked layers are mixed (Conv1d(L, 1, 1) = weighted sum + bias); the mixed vectors are
    averaged over segments; then Linear -> BatchNorm (eval: running stats, eps 1e-5) -> GELU
    per block, and sigmoid onto each score's range.
    """
    s = {k: v.double() for k, v in copy.deepcopy(state).items()}
    picked = hidden[:, [i % hidden.shape[1] for i in config["layer_indices"]], :]
    if "aggregator.weight" in s:
        weight, bias = s["aggregator.weight"].reshape(-1), s["aggregator.bias"].reshape(())
    else:
        weight, bias = torch.tensor(mix[0], dtype=torch.float64), torch.tensor(mix[1])
    x = ((picked * weight[None, :, None]).sum(dim=1) + bias).mean(dim=0)

    def block(prefix: str, x: torch.Tensor) -> torch.Tensor:
        y = s[f"{prefix}.block.0.weight"] @ x + s[f"{prefix}.block.0.bias"]
        mean, var = s[f"{prefix}.block.1.running_mean"], s[f"{prefix}.block.1.running_var"]
        y = (y - mean) / torch.sqrt(var + 1e-5) * s[f"{prefix}.block.1.weight"]
        y = y + s[f"{prefix}.block.1.bias"]
        return 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))  # exact GELU

    for i in range(len(config["shared_dims"])):
        x = block(f"shared.{i}", x)
    scores = {}
    last = len(config["branch_dims"])
    for task in TASKS:
        h = x
        for j in range(last):
            h = block(f"branch_{task}.branch.{j}", h)
        z = s[f"branch_{task}.branch.{last}.weight"] @ h + s[f"branch_{task}.branch.{last}.bias"]
        low, high = RANGES[task]
        scores[task] = float(torch.sigmoid(z)[0] * (high - low) + low)
    return scores


def build_cache(
    cache: Path,
    tmp: Path,
    *,
    apex: dict[str, bytes] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Both replicas (test-size MERT, fitting APEX heads) in ``cache``; returns what was written
    (configs, states, snapshot folders) for independent checks. ``apex`` replaces the APEX files."""
    m_config = mert_config()
    m_state = mert_state(m_config, seed)
    a_config = apex_config(input_dim=m_config["hidden_size"])
    a_state = apex_state(a_config, seed + 1)
    files = apex if apex is not None else apex_files(a_config, a_state, tmp)
    return {
        "mert_config": m_config,
        "mert_state": m_state,
        "apex_config": a_config,
        "apex_state": a_state,
        "apex_snapshot": write_cache_repo(cache, APEX_REPO, files, APEX_REVISION),
        "mert_snapshot": write_cache_repo(
            cache, MERT_REPO, mert_files(m_config, m_state, tmp), MERT_REVISION
        ),
    }
