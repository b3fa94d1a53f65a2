"""What a new user of the simulation met: shared link parameters, deadlock
detection, leftover servers at the end of a run, named switches outliving a run."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from ipaddress import IPv4Address as A
from pathlib import Path
from typing import Any, cast

import pytest

from miragekit import aio, sim, v1
from miragekit.link import ImpairedLink, LinkParams, VnetIf, VnetSwitch
from miragekit.result import Error, Ok
from miragekit.sim import _loop as sim_loop
from miragekit.stack import DirectStackV4, Static


def _frame(src: VnetIf, dst: VnetIf, payload: bytes) -> bytes:
    return dst.mac().packed + src.mac().packed + b"\x88\xb5" + payload.ljust(46, b"\0")


def test_interfaces_made_from_one_link_params_do_not_share_it() -> None:
    """Cutting one cable leaves the others made from the same LinkParams up."""

    async def main() -> tuple[list[bytes], bool]:
        params = LinkParams(latency=0.001)
        sw = VnetSwitch(seed=1)
        a, b, c = (sw.add_interface(n, link=params) for n in "abc")
        got: list[bytes] = []
        for vif in (a, b):
            vif.set_receiver(lambda f: None)
        c.set_receiver(lambda f: got.append(bytes(f[14:17])))
        a.link.up = False
        a.send(_frame(a, c, b"a->"))
        b.send(_frame(b, c, b"b->"))
        await asyncio.sleep(0.1)
        return got, params.up

    got, original_up = sim.run(main(), seed=1)
    assert got == [b"b->"]  # a's cable is cut, b's is not
    assert original_up  # the caller's object is left alone


def test_an_impaired_link_takes_its_own_copy_of_the_params() -> None:
    params = LinkParams(loss=0.5)
    sw = VnetSwitch(seed=1)
    one, two = (ImpairedLink(sw.add_interface(n), params, seed=1) for n in "ab")
    one.link.up = False
    assert two.link.up and params.up and two.link == params


async def _never() -> None:
    await asyncio.Event().wait()


async def _stubborn() -> None:
    """A task whose teardown waits on something that never comes."""
    try:
        await _never()
    finally:
        await _never()


def test_deadlock_detection_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_loop, "DEFAULT_IDLE_TIMEOUT", 0.2)

    async def main() -> None:
        await asyncio.sleep(3)
        await _never()

    with pytest.raises(sim.SimDeadlock, match=r"at t=3\.0: .*waiting: .*main"):
        sim.run(main())


_NOISY = """
import asyncio, gc
from miragekit import sim
from tests.test_sim_fixes import _never, _stubborn

async def main():
    asyncio.create_task(_stubborn())
    await asyncio.sleep(1)
    await _never()

try:
    sim.run(main(), idle_timeout=0.2)
except sim.SimDeadlock as e:
    print("deadlock reported")
gc.collect()
"""


def test_deadlock_report_is_not_followed_by_task_destroyed_noise() -> None:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", _NOISY], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "deadlock reported\n"
    assert proc.stderr == ""


def test_run_ends_when_main_returns_whatever_is_still_waiting() -> None:
    """A leftover task whose teardown never finishes does not turn a finished run into a
    deadlock: ``main``'s result comes back at once."""

    async def main() -> float:
        left = asyncio.create_task(_stubborn())
        await asyncio.sleep(20)
        assert not left.done()
        return sim.now()

    wall = time.monotonic()
    assert sim.run(main(), idle_timeout=5) == 20.0
    assert time.monotonic() - wall < 2


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_two_stacks_left_open_end_cleanly_and_the_switch_name_is_free() -> None:
    """An echo server and a client that is done at t=20 s, nothing
    closed; the run ends at once, twice in a row with the same switch name."""

    async def main() -> float:
        sw = VnetSwitch("lan")
        stacks = []
        for i in (1, 2):
            r = await DirectStackV4.connect(
                v1.StackConfig(f"s{i}", None, sw.add_interface(f"s{i}"), Static(f"10.0.0.{i}/24"))
            )
            assert isinstance(r, Ok)
            stacks.append(r.value)
        await aio.start_server(_echo, stacks[1], 7)
        reader, writer = await aio.open_connection(stacks[0], "10.0.0.2", 7)
        for _ in range(20):
            writer.write(b"x" * 100)
            assert await reader.readexactly(100) == b"x" * 100
            await asyncio.sleep(1)
        return sim.now()

    for _ in range(2):
        wall = time.monotonic()
        assert 20.0 <= sim.run(main(), seed=1, idle_timeout=5) < 20.2
        assert time.monotonic() - wall < 5


async def _static(sw: VnetSwitch, name: str, cidr: str, probe: float) -> Any:
    return await DirectStackV4.connect(
        v1.StackConfig(name, None, sw.add_interface(name), Static(cidr, probe=probe))
    )


def test_a_static_address_in_use_is_refused_after_probing() -> None:
    """RFC 5227: the second stack asking for 10.0.0.1 hears the first one's answer and
    gives up, naming the address and the MAC that has it; a free address passes."""

    async def main() -> tuple[str, float, int, int, int]:
        sw = VnetSwitch(seed=1)
        first = await _static(sw, "a", "10.0.0.1/24", probe=1.0)
        assert isinstance(first, Ok)
        t0 = sim.now()
        second = await _static(sw, "b", "10.0.0.1/24", probe=1.0)
        assert isinstance(second, Error)
        refused_after = sim.now() - t0
        sent = sw.interface("b").get_stats_counters().tx_pkts
        third = await _static(sw, "c", "10.0.0.3/24", probe=1.0)
        assert isinstance(third, Ok)
        await asyncio.sleep(5)
        return (
            str(second.error),
            refused_after,
            sw.interface("b").get_stats_counters().tx_pkts - sent,
            first.value.ip_stack.ipv4.arp.counters.replies_sent,
            third.value.ip_stack.ipv4.arp.counters.probes_sent,
        )

    msg, refused_after, sent_after, replies, probes = sim.run(main(), seed=1)
    assert "10.0.0.1 is already in use on the link by 02:6d:6b:00:00:01" in msg
    assert refused_after < 0.1  # the answer comes at once: no need to wait the second
    assert sent_after == 0  # the refused stack is stopped
    assert replies >= 1 and probes == 3


def test_probe_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="Static: probe must be >= 0 seconds, got -1"):
        Static("10.0.0.1/24", probe=-1)


DOC = Path(__file__).resolve().parent.parent / "docs" / "simulation.md"


def doc_example(heading: str) -> str:
    """The first Python block under ``heading`` in docs/simulation.md."""
    text = DOC.read_text()
    section = text[text.index(heading) :]
    return section[section.index("```python\n") + 10 : section.index("\n```\n")]


def test_the_documented_stack_on_a_virtual_switch_runs() -> None:
    code = doc_example("## A stack on a virtual switch")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("done at t=") and proc.stderr == ""


def test_the_documented_timings_and_arp_queue() -> None:
    """The figures docs/simulation.md gives: connect ~123 s (to a silent host or to no
    host), stalled ~342 s, and a 500-datagram burst to an unresolved host keeping 64."""

    async def main() -> dict[str, object]:
        sw = VnetSwitch(seed=1)
        a, b = [await _static(sw, f"s{i}", f"10.0.0.{i}/24", 0.0) for i in (1, 2)]
        assert isinstance(a, Ok) and isinstance(b, Ok)
        out: dict[str, object] = {}
        got: list[int] = []

        async def rx(src: object, dst: object, sport: int, buf: memoryview) -> None:
            got.append(1)

        b.value.listen_udpv4(port=9, callback=rx)
        for _ in range(500):
            await a.value.udpv4().write(b"x" * 100, dest_ip=A("10.0.0.2"), dest_port=9)
        await asyncio.sleep(1)
        out["burst"] = (len(got), a.value.ip_stack.counters()["arp"]["dropped_queue_full"])
        await aio.start_server(_echo, b.value, 7)
        reader, writer = await aio.open_connection(a.value, "10.0.0.2", 7)
        sw.interface("s2").link.up = False
        t0 = sim.now()
        writer.write(b"y")
        with pytest.raises(TimeoutError):
            await reader.readexactly(1)
        out["stalled"] = sim.now() - t0
        t0 = sim.now()
        with pytest.raises(TimeoutError):
            await aio.open_connection(a.value, "10.0.0.2", 7)
        out["connect"] = sim.now() - t0
        t0 = sim.now()
        with pytest.raises(TimeoutError):
            await aio.open_connection(a.value, "10.0.0.99", 7)
        out["no such host"] = sim.now() - t0
        return out

    out = sim.run(main(), seed=1)
    assert out["burst"] == (64, 436)
    assert 341 < cast(float, out["stalled"]) < 344
    assert 122 < cast(float, out["connect"]) < 125
    assert 122 < cast(float, out["no such host"]) < 125


def test_a_lossy_link_does_not_deliver_inside_the_senders_call() -> None:
    """With loss on both links the ARP reply used to come back inside the request's
    send, before the SYN waiting for it was queued: the SYN was lost and every first
    connection took one retransmission timeout (1 s)."""

    async def main() -> list[float]:
        sw = VnetSwitch(seed=1)
        stacks = []
        for i in (1, 2):
            vif = sw.add_interface(f"s{i}", link=LinkParams(loss=1e-9))
            r = await DirectStackV4.connect(
                v1.StackConfig(f"s{i}", None, vif, Static(f"10.0.0.{i}/24"))
            )
            assert isinstance(r, Ok)
            stacks.append(r.value)
        await aio.start_server(_echo, stacks[1], 7)
        took = []
        for _ in range(3):
            t0 = sim.now()
            await aio.open_connection(stacks[0], "10.0.0.2", 7)
            took.append(sim.now() - t0)
        return took

    assert max(sim.run(main(), seed=1)) < 0.01
