"""``Network.check_determinism()``: the network runs, then a fresh replica of its recorded
plan (hosts, links, captures, scheduled faults) runs with the same seed, and the first
difference is named; what cannot be replayed honestly is refused before anything runs."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from tests.test_sim_cluster import upper_server
from tests.test_sim_observe import survivor

from miragekit import sim
from miragekit.link import LinkParams


class Tally:
    """A stateful program: a second run of the same object would start from 1."""

    def __init__(self) -> None:
        self.runs = 0

    async def main(self) -> int:
        self.runs += 1
        reader, writer = await asyncio.open_connection("db", 5432)
        writer.write(b"x\n" * self.runs)
        await writer.drain()
        await reader.readline()
        return self.runs


def planned(tmp: Path, seen: list[float]) -> sim.Network:
    net = sim.Network(seed=5, link=LinkParams(latency=0.002, loss=0.05))
    net.host("db", main=upper_server, pcap=tmp / "db.pcap")
    net.host("c", main=survivor)
    net.host("t", main=Tally().main, ip="10.0.0.9", clock_skew=2.0)
    net.link("c", jitter=0.001)
    net.capture(tmp / "all.pcap")
    net.partition(["t"], at=0.5)
    net.heal(at=3.0)
    net.restart("db", at=12)  # after c's first exchange, however long lost SYNs delay it
    net.at(7.0, lambda: seen.append(sim.now()))
    return net


def test_a_deterministic_network_passes_with_its_faults_replayed(tmp_path: Path) -> None:
    seen: list[float] = []
    net = planned(tmp_path, seen)
    result = net.check_determinism(until=60, keep=tmp_path / "check")
    assert result.ok, result.difference
    one, two = result.reports
    assert one == two and net.report is one
    texts = [e.text for e in one.events]
    for fault in ("partition t", "heal", "restart db", "start db again"):
        assert fault in texts, texts
    assert one["c"].value == ["reset", "THREE"] and one["t"].value == 1  # each run's own Tally
    assert seen == [7.0, 7.0]  # the action ran in both runs (a copy of it in the second)
    for run in ("run1", "run2"):  # the captures went to the check's directories
        assert (tmp_path / "check" / run / "segment.pcap").stat().st_size > 1000
        assert (tmp_path / "check" / run / "host-db.pcap").exists()
    assert not (tmp_path / "all.pcap").exists() and not (tmp_path / "db.pcap").exists()


def test_a_main_drawing_from_the_shared_random_is_named() -> None:
    async def client() -> str:
        await asyncio.sleep(random.random())
        reader, writer = await asyncio.open_connection("db", 5432)
        writer.write(b"hi\n")
        return (await reader.readline()).decode()

    random.seed()
    net = sim.Network(seed=3)
    net.host("db", main=upper_server)
    net.host("c", main=client)
    result = net.check_determinism(until=20)
    assert not result.ok
    assert re.match(
        r"seed 3 is not deterministic: event 3 differs: first run '\d\.\d{6} c: connect "
        r"c:\d+ db:5432', second run '\d\.\d{6} c: connect c:\d+ db:5432'; code escaped the "
        r"simulation: c: random\.random\(\) \(the shared generator, not the seed's\) at "
        + re.escape(__file__),
        result.difference,
    ), result.difference


def test_what_cannot_be_replayed_is_refused_before_anything_runs() -> None:
    net = sim.Network()
    net.host("db", main=upper_server)
    net.at(1.0, lambda: net.link("db", loss=0.5))
    with pytest.raises(ValueError) as e:
        net.check_determinism(until=5)
    assert re.fullmatch(
        r"check_determinism: the action scheduled at t=1 \(test_what_cannot_be_replayed_is_"
        r"refused_before_anything_runs\.<locals>\.<lambda> at \S+test_sim_replica\.py:\d+\) "
        r"refers to this Network, so a second run would act on the first one; build the "
        r"scenario in a function and use sim\.check_determinism\(build, seed\)",
        str(e.value),
    ), str(e.value)
    assert net.report is None and net.events == []

    other = sim.Network()

    async def crasher() -> None:
        await asyncio.sleep(1)
        other.crash("db")

    other.host("db", main=upper_server)
    other.host("x", main=crasher)
    with pytest.raises(ValueError, match=r"host 'x'\'s main \(.*crasher at .*\) refers to"):
        other.check_determinism()

    done = sim.Network()
    done.host("db")
    done.run(until=1)
    with pytest.raises(RuntimeError, match="this network has already run; call it instead of"):
        done.check_determinism()
    with pytest.raises(ValueError, match="the network has no hosts"):
        sim.Network().check_determinism()
    with pytest.raises(ValueError, match="until must be > 0 seconds or None, got -1"):
        net2 = sim.Network()
        net2.host("a")
        net2.check_determinism(until=-1)
