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


def test_cpu_from_counts_the_echoes_and_cpu_after_the_start_up(sim_cluster: ModuleType) -> None:
    """``--cpu-from T``: the CPU seconds read at simulated times T and the run's end,
    and the echoes between them, beside the whole run's figures."""
    args = sim_cluster.argparse.Namespace(hosts=4, conns=8, seconds=6.0, loss=0.01, cpu_from=3.0)
    row = sim_cluster.measure("sim.Network", sim_cluster.with_network, args)
    times: list[float] = []
    marks = {3.0: 0.0, 6.0: 0.0}
    done_by = {3.0: 0}
    echoes = sim_cluster.with_network(4, 8, 6.0, 0.01, times, marks, done_by)
    assert echoes == row["echoes"] == len(times)
    # Counted at T rather than kept: the same echoes (none completes at exactly 3.0).
    assert done_by[3.0] == sum(1 for t in times if t < 3.0) > 0
    assert row["steady_echoes"] == sum(1 for t in times if t >= 3.0) >= 8 * 2
    assert 0 < marks[3.0] < marks[6.0]
    assert row["steady_cpu_us_per_echo"] > 0
