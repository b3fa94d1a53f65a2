"""``bench/sim_broadcast.py`` measures what it says: each request it sends reaches the
other hosts' ARP (the bench checks the count itself), in both of its modes."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_the_broadcast_bench_reaches_every_host_in_both_modes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("sim_broadcast")
    ns = bench.measure(hosts=20, requests=10)
    assert set(ns) == {"one instant", "spread", "idle"}
    assert all(v > 0 for v in ns.values())
