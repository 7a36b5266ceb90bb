"""One settings object for the app, the CLI and the jobs, read from ``APEX_*`` variables.

Every field carries its variable, a one-line description (README's table lists the same
variables; a test keeps them in step) and its checks; a bad value raises :class:`SettingsError`
naming the variable, what was wrong and what to set.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apex.tasks import VOTE_SOURCES

__all__ = [
    "Settings",
    "SettingsError",
    "default_data_dir",
    "env_table",
    "parse_bool",
    "split_list",
]


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable and the fix."""


def split_list(value: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parse_bool(text: str) -> bool | None:
    """True for 1/true/yes/on, False for 0/false/no/off (any case), None for anything else."""
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    return False if word in ("0", "false", "no", "off") else None


def _env(
    name: str,
    doc: str,
    default: Any = None,
    *,
    check: Callable[[str, Any], None] | None = None,
    **checks: Any,
) -> Any:
    """A field read from variable ``name`` (``default`` may be a factory). ``checks``:
    ``choices``, ``min``/``max``, ``secret`` (hidden in ``repr``); ``check(name, value)`` raises
    :class:`SettingsError` for any other rule."""
    meta = {"env": name, "doc": doc, **checks}
    if check is not None:
        meta["check"] = check
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _kind(f: dataclasses.Field) -> str:
    text = str(f.type)
    return next((kind for kind in ("bool", "int", "float", "Path") if kind in text), "str")


def _parse(f: dataclasses.Field, raw: str) -> Any:
    """The variable text ``raw`` in ``f``'s type (bool, int, float, Path or str)."""
    name, kind = f.metadata["env"], _kind(f)
    if kind == "bool":
        value = parse_bool(raw)
        if value is None:
            raise SettingsError(
                f"{name}={raw!r} is not a yes/no value; use 1/0, true/false or yes/no."
            )
        return value
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r} is not {'an integer' if kind == 'int' else 'a number'}; "
                f"set it like {name}={f.default}."
            ) from None
    return Path(raw).expanduser() if kind == "Path" else raw


def _check(f: dataclasses.Field, value: Any) -> None:
    meta, name = f.metadata, f.metadata["env"]
    if isinstance(value, float) and math.isnan(value):
        raise SettingsError(f"{name} is NaN; set a number such as {f.default}.")
    if "choices" in meta and value not in meta["choices"]:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(meta['choices'])}.")
    if "min" in meta and value < meta["min"]:
        raise SettingsError(f"{name}={value!r} is below its minimum {meta['min']}.")
    if "max" in meta and value > meta["max"]:
        raise SettingsError(f"{name}={value!r} is above its maximum {meta['max']}.")
    if "check" in meta:
        meta["check"](name, value)


def _check_sources(name: str, value: str) -> None:
    unknown = set(split_list(value)) - set(VOTE_SOURCES)
    if unknown or not split_list(value):
        raise SettingsError(
            f"{name}={value!r} names unknown vote sources {sorted(unknown)}; use "
            f"a comma-separated subset of {', '.join(VOTE_SOURCES)} (e.g. `live`)."
        )


def _check_repo_id(name: str, value: str | None) -> None:
    if value is not None and value.count("/") != 1:
        raise SettingsError(f"{name}={value!r} is not a repo id; use the form `owner/name`.")


class _Under:
    """A path under ``Settings.data_dir`` (or the field ``instead`` when set), as an attribute."""

    def __init__(self, name: str, doc: str, instead: str = "") -> None:
        self.name, self.instead, self.__doc__ = name, instead, doc

    def __get__(self, settings: Any, owner: type | None = None) -> Path:
        if settings is None:
            return self  # type: ignore[return-value]  # the class attribute: for docs
        return getattr(settings, self.instead, None) or settings.data_dir / self.name


def default_data_dir() -> Path:
    """``./var`` (absolute) on local disk, on a Space too (no ``/data`` assumption: a bucket)."""
    return Path("var").resolve()


def default_trusted_proxies() -> int:
    """1 on a Hugging Face Space (``SPACE_ID`` set; its proxy appends to ``X-Forwarded-For``),
    else 0 (reached directly, the header is whatever the client wrote)."""
    return 1 if os.environ.get("SPACE_ID") else 0


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Build with :meth:`from_env`; every field has a safe default."""

    data_dir: Path = _env(
        "APEX_DATA_DIR",
        "Vote store, caches, demo corpus, models: local disk (a network/FUSE mount such as a "
        "bucket volume is refused). Default `./var`; a Space wipes it at every restart.",
        default_data_dir,
    )
    cache_root: Path | None = _env(
        "APEX_CACHE_DIR",
        "Caches (embeddings, loudness copies, pool scores, downloads); default `<data dir>/cache`. "
        "Safe on a bucket mount (`/data/apex-cache`): then a restart does not re-embed the pool.",
        None,
    )
    model: str = _env(
        "APEX_MODEL",
        "`auto` (the model registry's champion when there is one, else published APEX when "
        "reachable, else the offline demo model), or a pinned model: `demo`, a local model "
        "directory or `.pt` file, or a Hub model id. A pinned model keeps serving: promoted "
        "refits are recorded in the registry but not swapped in.",
        "auto",
    )
    encoder: str = _env(
        "APEX_ENCODER",
        "`auto` (the model's own encoder), `fallback` (built-in descriptors), a local "
        "HuBERT-shaped checkpoint directory, or a Hub id such as `m-a-p/MERT-v1-95M`.",
        "auto",
    )
    precision: str = _env(
        "APEX_PRECISION",
        "`fast` (bf16 autocast where supported) or `reference` (fp32, as published).",
        "fast",
        choices=("fast", "reference"),
    )
    device: str = _env("APEX_DEVICE", "`auto`, `cpu`, `cuda` or `cuda:N`.", "auto")
    trust_remote_code: bool = _env(
        "APEX_TRUST_REMOTE_CODE",
        "Allow a checkpoint's own Python code to run when loading an encoder (off by default).",
        False,
    )
    max_audio_s: float = _env(
        "APEX_MAX_AUDIO_S",
        "Longest accepted song, seconds (uploads and arena pool clips; longer pool clips are "
        "skipped with the reason).",
        600.0,
        min=1.0,
        max=7200.0,
    )
    pool: str = _env(
        "APEX_POOL",
        "Arena clip pool: `auto` (the latest Music Arena release batch when the Hub is reachable, "
        "else the demo corpus; the Arena tab says which), `demo` (the synthetic demo corpus), a "
        "local audiofolder directory, `music-arena[:<batch>,...]`, or a Hub dataset id in the "
        "audiofolder convention.",
        "auto",
    )
    demo_seed: int = _env("APEX_DEMO_SEED", "Seed of the synthetic demo corpus.", 0, min=0)
    demo_clips: int = _env("APEX_DEMO_CLIPS", "Clips in the demo corpus.", 480, min=16, max=20000)
    sampler: str = _env(
        "APEX_SAMPLER",
        "Pair sampling: `balanced` (fewest battles first) or `info` (least certain ratings first, "
        "from the vote store's current ratings, refitted every minute).",
        "balanced",
        choices=("balanced", "info"),
    )
    min_listen_s: float = _env(
        "APEX_MIN_LISTEN_S",
        "Seconds each clip must be listened to (server-checked) before a vote is accepted.",
        5.0,
        min=0.0,
        max=600.0,
    )
    battle_ttl_s: float = _env(
        "APEX_BATTLE_TTL_S", "Seconds after issue that a battle expires.", 3600.0, min=10.0
    )
    rate_limit_votes: int = _env(
        "APEX_RATE_LIMIT_VOTES", "Votes allowed per voter per window.", 30, min=1
    )
    rate_limit_window_s: float = _env(
        "APEX_RATE_LIMIT_WINDOW_S", "Rate-limit window, seconds.", 600.0, min=1.0
    )
    rate_limit_battles: int = _env(
        "APEX_RATE_LIMIT_BATTLES", "Battles issued per voter per window.", 60, min=1
    )
    rate_limit_listens: int = _env(
        "APEX_RATE_LIMIT_LISTENS",
        "Listening reports accepted per voter per window (the page sends about one per second "
        "per playing clip).",
        3000,
        min=1,
    )
    listen_reports_per_battle: int = _env(
        "APEX_LISTEN_REPORTS_PER_BATTLE",
        "Listening reports stored per battle; later ones are refused.",
        600,
        min=1,
    )
    feedback_max_chars: int = _env(
        "APEX_FEEDBACK_MAX_CHARS", "Longest free-text feedback accepted.", 1000, min=0, max=20000
    )
    loudness_match: bool = _env(
        "APEX_LOUDNESS_MATCH",
        "Play arena clips loudness-matched (ITU-R BS.1770-4) at `APEX_LOUDNESS_TARGET_LUFS`; off "
        "plays them as generated (their loudness is still measured and recorded with each vote).",
        True,
    )
    loudness_target_lufs: float = _env(
        "APEX_LOUDNESS_TARGET_LUFS",
        "Integrated loudness every arena clip is played at, LUFS.",
        -16.0,
        min=-40.0,
        max=-6.0,
    )
    loudness_true_peak_dbtp: float = _env(
        "APEX_LOUDNESS_TRUE_PEAK_DBTP",
        "Highest true peak (4x oversampled) of a loudness-matched clip, dBTP; a clip whose gain "
        "would exceed it gets less gain (never clipped or limited).",
        -1.0,
        min=-20.0,
        max=0.0,
    )
    trusted_proxies: int = _env(
        "APEX_TRUSTED_PROXIES",
        "Proxies in front of the app that append to `X-Forwarded-For`; the voter's address is "
        "the hop the outermost one appended. 0 ignores the header and uses the connection's peer "
        "address. Default 1 on a Hugging Face Space (`SPACE_ID` set), else 0.",
        default_trusted_proxies,
        min=0,
        max=10,
    )
    signin: str = _env(
        "APEX_SIGNIN",
        "'Sign in with Hugging Face' in the Arena: `auto` (offered on a Space with `hf_oauth: "
        "true`), `on` (also locally, with Gradio's mock of your own `hf auth login`) or `off`. "
        "Signed-in votes are keyed and rate-limited per account; anonymous voting always works.",
        "auto",
        choices=("auto", "on", "off"),
    )
    salt: str | None = _env(
        "APEX_SALT",
        "Secret salt for voter pseudonyms (set as a Space secret). If unset, one is generated "
        "and kept in the data directory, with a warning.",
        None,
        secret=True,
    )
    database_url: str | None = _env(
        "APEX_DATABASE_URL",
        "Vote store URL: unset for SQLite in the data directory, or `postgresql://...`.",
        None,
        secret=True,
    )
    votes_repo: str | None = _env(
        "APEX_VOTES_REPO",
        "Hub dataset repo id (`owner/name`) that receives the votes; unset keeps votes local.",
        None,
        check=_check_repo_id,
    )
    votes_private: bool = _env(
        "APEX_VOTES_PRIVATE", "Create the votes dataset repo as private.", False
    )
    sync_minutes: float = _env(
        "APEX_SYNC_MINUTES",
        "Minutes between pushes of new vote shards to the Hub. Each push is one commit, so the "
        "votes repo gains at most 1440 / this many commits a day (24 by default), plus one per "
        "graceful stop; new shards wait for the next push.",
        60.0,
        min=5.0,
    )
    model_repo: str | None = _env(
        "APEX_MODEL_REPO", "Hub model repo: promotions pushed, champion restored at start.", None
    )
    refit_hours: float = _env(
        "APEX_REFIT_HOURS",
        "Hours between background refits in the app (one runs when this many hours have passed "
        "with new votes, or after `APEX_REFIT_MIN_VOTES` new votes, whichever comes first); 0 "
        "turns refits off.",
        24.0,
        min=0.0,
    )
    refit_min_votes: int = _env(
        "APEX_REFIT_MIN_VOTES",
        "New live votes that trigger a refit before the hours are up.",
        500,
        min=1,
    )
    refit_epochs: int = _env(
        "APEX_REFIT_EPOCHS",
        "Refit epochs; 0 sizes them to the data (about 1,500 steps, 50-200 epochs).",
        0,
        min=0,
        max=10000,
    )
    refit_batch_size: int = _env(
        "APEX_REFIT_BATCH_SIZE",
        "Refit batch size; 0 sizes it to the data (training songs / 8, 32-512).",
        0,
        min=0,
        max=65536,
    )
    refit_lr: float = _env(
        "APEX_REFIT_LR",
        "Refit learning rate; 0 sizes it to the data (2e-3 * sqrt(1000 / songs), 1e-4-2e-3).",
        0.0,
        min=0.0,
        max=1.0,
    )
    refit_patience: int = _env(
        "APEX_REFIT_PATIENCE",
        "Epochs without a better validation criterion before a refit stops early; 0 = a fifth "
        "of the epochs (at least 10).",
        0,
        min=0,
    )
    refit_holdout: float = _env(
        "APEX_REFIT_HOLDOUT",
        "Share of the votes (the latest) held out for the gate, never trained on.",
        0.2,
        min=0.05,
        max=0.5,
    )
    refit_sources: str = _env(
        "APEX_REFIT_SOURCES",
        "Comma-separated vote sources that train refits: `live` (votes cast in this arena), "
        "`simulated`, `imported`. Default only live votes.",
        "live",
        check=_check_sources,
    )
    refit_threads: int = _env(
        "APEX_REFIT_THREADS",
        "CPU threads of the refit process (it also runs at low priority, so scoring and voting "
        "keep their cores).",
        1,
        min=1,
        max=256,
    )
    refit_nice: int = _env(
        "APEX_REFIT_NICE",
        "Scheduling niceness of the refit process (0 normal priority, 19 lowest).",
        10,
        min=0,
        max=19,
    )
    engagement: str = _env(
        "APEX_ENGAGEMENT",
        "Engagement data for refits (rows count only when embedded by the serving model's "
        "encoder): `auto` (`<data dir>/engagement` when it holds shards, else the demo corpus's "
        "for the demo model), a local folder of Parquet shards, or a Hub dataset id (downloaded "
        "once into the cache; when it cannot be had the refit runs without it and the About tab "
        "says why).",
        "auto",
    )
    host: str = _env(
        "APEX_HOST",
        "Interface the app listens on (`GRADIO_SERVER_NAME` wins when set).",
        "127.0.0.1",
    )
    port: int = _env(
        "APEX_PORT",
        "Port the app listens on (`GRADIO_SERVER_PORT` wins when set).",
        7860,
        min=1,
        max=65535,
    )
    score_concurrency: int = _env(
        "APEX_SCORE_CONCURRENCY",
        "Scoring requests accepted at once; requests arriving together share batched encoder "
        "forwards (up to this many clips per batch; at least 4 on GPU).",
        1,
        min=1,
    )
    warmup_wait_s: float = _env(
        "APEX_WARMUP_WAIT_S",
        "Seconds a `/score` or `/new_battle` call made while the app warms up waits (with "
        "progress) before it is told to retry.",
        120.0,
        min=0.0,
        max=3600.0,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every ``APEX_*`` variable from ``env`` (default ``os.environ``), then ``overrides``;
        :class:`SettingsError` when a value does not parse or is out of range."""
        env = os.environ if env is None else env
        values = {
            f.name: _parse(f, env[f.metadata["env"]].strip())
            for f in dataclasses.fields(cls)
            if env.get(f.metadata["env"], "").strip()  # unset or blank: the default
        }
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "cache_root", self.cache_root and Path(self.cache_root))

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (validated like any other value)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value is not None:
                value = "***"
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    @property
    def model_pinned(self) -> bool:
        """True when ``APEX_MODEL`` names a model: promotions are then not swapped in."""
        return self.model != "auto"

    store_path = _Under("votes.sqlite", "SQLite vote store file.")
    cache_dir = _Under("cache", "Caches: ``APEX_CACHE_DIR`` when set.", instead="cache_root")
    models_dir = _Under("models", "Versioned model directories (demo model, refits).")
    demo_dir = _Under("demo", "The generated demo corpus (audiofolder layout).")
    export_dir = _Under(
        "export", "Append-only Parquet vote shards, the folder the Hub sync uploads."
    )


def env_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, in declaration order."""
    rows = []
    for f in dataclasses.fields(Settings):
        if f.default is not dataclasses.MISSING:
            default = "unset" if f.default is None else str(f.default)
        else:
            default = "see description"
        rows.append((f.metadata["env"], default, f.metadata["doc"]))
    return rows
