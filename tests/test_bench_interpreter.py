"""``bench/interpreter.py`` names the Python a benchmark ran on, and how its interpreter
is linked (built into the executable, or a shared libpython)."""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def interpreter(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("interpreter")


def test_describes_this_process(interpreter: ModuleType) -> None:
    d = interpreter.describe()
    assert d["version"] == platform.python_version()
    assert d["executable"] == str(Path(sys.executable).resolve())
    maps = Path("/proc/self/maps").read_text()
    if d["libpython"] == "in the executable":
        assert "/libpython3" not in maps
    else:
        assert Path(d["libpython"]).exists()
        assert d["libpython"] in maps
    assert d["version"] in interpreter.line()
    assert d["libpython"] in interpreter.line()
