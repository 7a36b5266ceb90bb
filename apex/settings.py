"""One settings object for the app, the CLI and the jobs: field ``x`` is read from ``APEX_X``
(``cache_root``: ``APEX_CACHE_DIR``); README's table documents every variable. A bad value raises
:class:`SettingsError` naming the variable, what was wrong and what to set."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apex.tasks import VOTE_SOURCES


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


def _env(doc: str, default: Any = None, **checks: Any) -> Any:
    """A field (``default`` may be a factory). ``checks``: ``env`` (the variable, when not
    ``APEX_<NAME>``), ``choices``, ``min``/``max``, ``secret`` (hidden in ``repr``), and
    ``check(variable, value)``, raising :class:`SettingsError` for any other rule."""
    meta = {"doc": doc, **checks}
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _variable(f: dataclasses.Field) -> str:
    return f.metadata.get("env", f"APEX_{f.name.upper()}")


def _parse(f: dataclasses.Field, raw: str) -> Any:
    """The variable text ``raw`` in ``f``'s type (bool, int, float, Path or str)."""
    name, text = _variable(f), str(f.type)
    kind = next((kind for kind in ("bool", "int", "float", "Path") if kind in text), "str")
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
    meta, name = f.metadata, _variable(f)
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


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Build with :meth:`from_env`; every field has a safe default."""

    data_dir: Path = _env("Vote store, caches, demo corpus, models; local disk.", default_data_dir)
    cache_root: Path | None = _env("Caches; default `<data dir>/cache`.", env="APEX_CACHE_DIR")
    model: str = _env("`auto`, `demo`, a model directory, a `.pt` file or a Hub id.", "auto")
    encoder: str = _env("`auto` (the model's own), `fallback`, a checkpoint or a Hub id.", "auto")
    precision: str = _env(
        "`fast` (bf16 autocast) or `reference` (fp32).", "fast", choices=("fast", "reference")
    )
    device: str = _env("`auto`, `cpu`, `cuda` or `cuda:N`.", "auto")
    trust_remote_code: bool = _env("Let an encoder checkpoint's own Python code run.", False)
    max_audio_s: float = _env("Longest accepted song, seconds.", 600.0, min=1.0, max=7200.0)
    pool: str = _env(
        "Arena clips: `auto`, `demo`, an audiofolder, `music-arena[:<batch>,...]` or a Hub id.",
        "auto",
    )
    demo_seed: int = _env("Seed of the synthetic demo corpus.", 0, min=0)
    demo_clips: int = _env("Clips in the demo corpus.", 480, min=16, max=20000)
    sampler: str = _env(
        "Pair sampling: `balanced` (fewest battles) or `info` (least certain).",
        "balanced",
        choices=("balanced", "info"),
    )
    min_listen_s: float = _env("Seconds of each clip heard before a vote.", 5.0, min=0.0, max=600.0)
    battle_ttl_s: float = _env("Seconds after issue that a battle expires.", 3600.0, min=10.0)
    rate_limit_votes: int = _env("Votes allowed per voter per window.", 30, min=1)
    rate_limit_window_s: float = _env("Rate-limit window, seconds.", 600.0, min=1.0)
    rate_limit_battles: int = _env("Battles issued per voter per window.", 60, min=1)
    rate_limit_listens: int = _env("Listening reports per voter per window.", 3000, min=1)
    listen_reports_per_battle: int = _env("Listening reports stored per battle.", 600, min=1)
    feedback_max_chars: int = _env("Longest feedback text.", 1000, min=0, max=20000)
    loudness_match: bool = _env("Play arena clips loudness-matched (ITU-R BS.1770-4).", True)
    loudness_target_lufs: float = _env("Arena playback loudness, LUFS.", -16.0, min=-40.0, max=-6.0)
    loudness_true_peak_dbtp: float = _env(
        "Highest true peak of a loudness-matched clip, dBTP.", -1.0, min=-20.0, max=0.0
    )
    trusted_proxies: int = _env(
        "Proxies appending to `X-Forwarded-For`; default 1 on a Space.",
        lambda: 1 if os.environ.get("SPACE_ID") else 0,  # a Space's proxy appends to it
        min=0,
        max=10,
    )
    signin: str = _env(
        "Hugging Face sign-in: `auto` (a Space with OAuth), `on` or `off`.",
        "auto",
        choices=("auto", "on", "off"),
    )
    salt: str | None = _env("Secret salt for voter pseudonyms; unset: generated.", secret=True)
    database_url: str | None = _env("Unset (SQLite) or a `postgresql://...` URL.", secret=True)
    votes_repo: str | None = _env("Hub dataset (`owner/name`) for the votes.", check=_check_repo_id)
    votes_private: bool = _env("Create the votes dataset repo as private.", False)
    sync_minutes: float = _env("Minutes between vote pushes to the Hub.", 60.0, min=5.0)
    model_repo: str | None = _env("Hub model repo: promotions pushed, champion restored.")
    refit_hours: float = _env("Hours between background refits; 0 turns them off.", 24.0, min=0.0)
    refit_min_votes: int = _env("New live votes that trigger a refit early.", 500, min=1)
    refit_epochs: int = _env("Refit epochs; 0 sizes them to the data.", 0, min=0, max=10000)
    refit_batch_size: int = _env("Refit batch size; 0 sizes it to the data.", 0, min=0, max=65536)
    refit_lr: float = _env("Refit learning rate; 0 sizes it to the data.", 0.0, min=0.0, max=1.0)
    refit_patience: int = _env("Refit early-stopping patience, epochs; 0: a fifth.", 0, min=0)
    refit_holdout: float = _env(
        "Latest share of votes held out for the gate.", 0.2, min=0.05, max=0.5
    )
    refit_sources: str = _env(
        "Vote sources that train refits, comma-separated.", "live", check=_check_sources
    )
    refit_threads: int = _env("CPU threads of the refit process.", 1, min=1, max=256)
    refit_nice: int = _env("Niceness of the refit process (0-19).", 10, min=0, max=19)
    engagement: str = _env("Refit engagement data: `auto`, a Parquet folder or a Hub id.", "auto")
    host: str = _env("Interface the app listens on (`GRADIO_SERVER_NAME` wins).", "127.0.0.1")
    port: int = _env("Port the app listens on (`GRADIO_SERVER_PORT` wins).", 7860, min=1, max=65535)
    score_concurrency: int = _env("Scoring requests accepted (and batched) at once.", 1, min=1)
    warmup_wait_s: float = _env("Seconds a call waits out warm-up.", 120.0, min=0.0, max=3600.0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every ``APEX_*`` variable from ``env`` (default ``os.environ``), then ``overrides``;
        :class:`SettingsError` when a value does not parse or is out of range."""
        env = os.environ if env is None else env
        values = {
            f.name: _parse(f, env[_variable(f)].strip())
            for f in dataclasses.fields(cls)
            if env.get(_variable(f), "").strip()  # unset or blank: the default
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
    export_dir = _Under("export", "Append-only Parquet vote shards, uploaded by the Hub sync.")
