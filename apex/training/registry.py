"""Versioned model directories (``v0001-20260101T000000Z/``: model files, ``metadata.json``,
``metrics.json``, ``README.md``) and a ``CHAMPION`` file naming one; importable without torch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from apex.files import write_text_atomic
from apex.settings import Settings

CHAMPION_FILE = "CHAMPION"


class ModelRegistry:
    """Versioned model directories under ``root`` plus the ``CHAMPION`` pointer."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def versions(self) -> list[Path]:
        """Version directories, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and p.name[:1] == "v")

    def new_version(self) -> Path:
        """Create and return the next version directory (``vNNNN-<UTC time>``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.name[1:5]) for p in self.versions() if p.name[1:5].isdigit()]
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.root / f"v{max(numbers, default=0) + 1:04d}-{stamp}"
        path.mkdir()
        return path

    def champion(self) -> Path | None:
        """The champion's directory, or None when there is none (or it vanished)."""
        pointer = self.root / CHAMPION_FILE
        if not pointer.is_file():
            return None
        path = self.root / pointer.read_text().strip()
        return path if path.is_dir() else None

    def promote(self, version: Path) -> None:
        """Point ``CHAMPION`` at ``version``; readers see the old or the new name, never half."""
        write_text_atomic(self.root / CHAMPION_FILE, Path(version).name + "\n")

    def gate_record(self, version: str | Path) -> dict[str, Any] | None:
        """The gate's record of ``version`` (``metrics.json``), or None when it has none."""
        path = self.root / Path(version).name / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else None


def registry_for(settings: Settings) -> ModelRegistry:
    """The app's registry: ``settings.models_dir / "refits"``."""
    return ModelRegistry(settings.models_dir / "refits")


def champion_of(settings: Settings) -> Path | None:
    """The directory of the registry's champion for ``settings``, or None when there is none."""
    return registry_for(settings).champion()
