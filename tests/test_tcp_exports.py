"""The public TCP surface: every exported name exists, and nothing here does I/O."""

from __future__ import annotations

import ast
import pathlib

import miragekit.tcp as tcp
import miragekit.wire.tcp as wire_tcp


def test_exports_exist() -> None:
    for mod in (tcp, wire_tcp):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.{name}"


def test_sans_io_no_clock_no_asyncio() -> None:
    root = pathlib.Path(tcp.__file__).parent
    files = [*root.rglob("*.py"), pathlib.Path(wire_tcp.__file__)]
    forbidden = {"asyncio", "time", "socket", "select", "threading", "random"}
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = {node.module.split(".")[0]}
            else:
                continue
            assert not names & forbidden, f"{path.name} imports {names & forbidden}"


def test_config_rejects_nonsense() -> None:
    import pytest

    for kw in (
        {"mss": 10},
        {"recv_buffer": 100},
        {"congestion": "reno2"},
        {"msl": -1.0},
        {"max_retransmits": 0},
        {"tso_max": 70000},
        {"recv_buffer": (65535 << 14) + 1},
    ):
        with pytest.raises(ValueError):
            tcp.Config(**kw)
    assert tcp.Config(msl=5.0).time_wait == 10.0
