"""``bench/sim_cluster.py``'s workload is the same at every length of run: its
connections do not start in step (in step, their echoes shared the loop's instants and
timers until loss spread them apart, so CPU per echo grew with the simulated time)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def sim_cluster(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("sim_cluster")


def test_echoes_fall_on_their_own_instants_from_the_start(sim_cluster: ModuleType) -> None:
    hosts, conns, seconds = 8, 48, 90.0
    times: list[float] = []
    echoes = sim_cluster.with_network(hosts, conns, seconds, 0.01, times)
    assert echoes == len(times) > conns * (seconds - 10)

    def instants(start: float) -> int:
        return len({t for t in times if start <= t < start + 20})

    early, late = instants(10.0), instants(seconds - 20)
    # Every connection echoes once a second: 20 s hold about conns * 20 echoes, and
    # nearly all of them at an instant of their own, early in the run as late.
    assert early >= 0.9 * conns * 20
    assert late >= 0.9 * conns * 20
    assert abs(late - early) <= 0.05 * early
