"""The package's front door: every published name resolves, lazily, to the object it names."""

from __future__ import annotations

import importlib
import subprocess
import sys

import annotation


def test_every_public_name_resolves_to_its_module_object() -> None:
    for name in annotation.__all__:
        module = importlib.import_module(annotation._EXPORTS[name])
        assert getattr(annotation, name) is getattr(module, name), name
    assert set(annotation.__all__) == set(annotation._EXPORTS) <= set(dir(annotation))


def test_importing_the_package_loads_nothing_heavy() -> None:
    heavy = "('annotation.', 'pandas', 'torch')"
    code = f"import sys, annotation; print(sorted(m for m in sys.modules if m.startswith({heavy})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_submodules_stay_importable_by_name() -> None:
    from annotation import board, rules

    assert callable(board.select_votes) and callable(rules.listen_status)
