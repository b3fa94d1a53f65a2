"""The public names of the simple devices (the public names README.md lists) exist and conform."""

from __future__ import annotations

import importlib

import pytest

from miragekit import testing, v1

FACADES = {
    "miragekit.time": ["Time"],
    "miragekit.clock": ["Clock"],
    "miragekit.random": ["Random"],
    "miragekit.entropy": ["Entropy", "SeededEntropy"],
    "miragekit.console": ["Console"],
    "miragekit.kv": ["DirKV", "TarKV", "KVListable"],
    "miragekit.testing.kv": ["check_kv_ro", "default_contents"],
}


@pytest.mark.parametrize("module", sorted(FACADES))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    exported = set(getattr(mod, "__all__", []))
    for name in FACADES[module]:
        assert hasattr(mod, name), f"{module}.{name} is missing"
        assert name in exported, f"{module}.__all__ lacks {name}"
    for name in exported:
        assert hasattr(mod, name), f"{module}.__all__ names a missing {name}"


def test_testing_facade_reexports_the_kv_suite() -> None:
    from miragekit.testing.kv import check_kv_ro

    assert testing.check_kv_ro is check_kv_ro


def test_io_page_module_has_every_seed_val() -> None:
    from miragekit import io_page

    for val in [n for n in dir(v1.IOPage) if not n.startswith("_")]:
        assert callable(getattr(io_page, val)), val
