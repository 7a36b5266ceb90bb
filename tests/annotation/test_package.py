"""The package's front door: ``import annotation`` is light, and the modules import by name."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_package_loads_nothing_heavy() -> None:
    heavy = "('annotation.', 'pandas', 'torch')"
    code = f"import sys, annotation; print(sorted(m for m in sys.modules if m.startswith({heavy})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_submodules_stay_importable_by_name() -> None:
    from annotation import board, rules

    assert callable(board.select_votes) and callable(rules.listen_status)
