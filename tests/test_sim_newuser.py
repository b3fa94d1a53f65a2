"""What a new user of ``sim.Network`` met: an ``at()`` action that raised was lost
(the run reported ok), and a network call made as no host gave a hint meant for
``aio.run``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import cast

import pytest

from miragekit import aio, sim


async def upper_server() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, None, 80)
    await server.serve_forever()


async def ticker() -> int:
    for _ in range(10):
        await asyncio.sleep(1)
    return 10


def test_a_raising_action_stops_the_run_and_run_raises_it() -> None:
    def sync_action() -> None:
        raise ValueError("sync action")

    net = sim.Network(seed=1)
    net.host("a", main=ticker)
    net.at(2.5, sync_action)
    with pytest.raises(ValueError, match="sync action") as info:
        net.run()
    assert "raised by the simulated network's at(2.5, ...), at t=2.500000" in (info.value.__notes__)
    assert [e.text for e in net.events][-1] == "at(2.5, ...) raised ValueError"


def test_a_raising_async_action_stops_the_run_and_run_raises_it() -> None:
    async def async_action() -> None:
        await asyncio.sleep(1)
        raise KeyError("async action")

    net = sim.Network(seed=1)
    net.host("a", main=ticker)
    net.at(2.0, async_action)
    with pytest.raises(KeyError, match="async action") as info:
        net.run(until=60)
    assert info.value.__notes__ == ["raised by the simulated network's at(2, ...), at t=3.000000"]


def test_a_network_call_as_no_host_names_the_way_out() -> None:
    async def as_nobody() -> None:
        await asyncio.open_connection("db", 80)

    net = sim.Network(seed=1)
    net.host("db", main=upper_server)
    net.at(1.0, as_nobody)
    with pytest.raises(RuntimeError, match=r"^create_connection: this code runs as no host"):
        net.run(until=5)


def test_a_host_stack_bound_by_an_action_resolves_names_from_the_plan() -> None:
    got: list[bytes] = []
    net = sim.Network(seed=1)

    async def probe() -> None:
        with aio.bind(net.stack("api")):
            reader, writer = await asyncio.open_connection("db", 80)
            writer.write(b"hi\n")
            got.append(await reader.readline())
            writer.close()

    net.host("db", main=upper_server)
    net.host("api")
    net.at(1.0, probe)
    report = net.run(until=5)
    assert got == [b"HI\n"]
    assert "api: connect" in report.format_events()


def test_a_server_left_waiting_without_until_is_a_deadlock_that_says_to_give_until() -> None:
    async def one_request() -> bytes:
        reader, writer = await asyncio.open_connection("db", 80)
        writer.write(b"hi\n")
        return await reader.readline()

    # (idle_timeout: quick even if another test left a thread alive in this process)
    net = sim.Network(seed=1, idle_timeout=0.1)
    net.host("db", main=upper_server)
    net.host("api", main=one_request)
    with pytest.raises(
        sim.SimDeadlock, match=r"\[db\].*serves for ever needs run\(until=SECONDS\)"
    ):
        net.run()


def test_a_plain_function_as_main_is_named_as_such() -> None:
    def not_async() -> int:
        return 5

    net = sim.Network(seed=1)
    net.host("s", main=not_async)  # type: ignore[arg-type]  # the mistake under test
    report = net.run(until=1)
    assert report["s"].state == "raised"
    assert str(report["s"].error) == (
        "host 's': main returned 5, not an awaitable; main must be an async function (async def)"
    )


def test_a_misspelt_host_name_lists_the_hosts_there_are() -> None:
    async def typo() -> None:
        await asyncio.open_connection("dbb", 80)

    net = sim.Network(seed=1)
    net.host("db", main=upper_server)
    net.host("api", main=typo)
    for i in range(12):
        net.host(f"n{i}")
    report = net.run(until=1)
    assert str(report["api"].error) == (
        "[Errno -2] dbb: no such host in the simulation "
        "(hosts: db, api, n0, n1, n2, n3, n4, n5, n6, n7 and 4 more)"
    )


def test_until_not_a_number_and_an_unknown_host_in_the_report_are_named() -> None:
    net = sim.Network(seed=1)
    net.host("a", main=ticker)
    with pytest.raises(ValueError, match=r"^run: until must be > 0 seconds or None, got '5'$"):
        net.run(until="5")  # type: ignore[arg-type]  # the mistake under test
    report = net.run(until=1)
    with pytest.raises(KeyError, match=r"no host named 'b' in the report \(hosts: a\)"):
        report["b"]


def test_ipv6_hosts_come_up_together_not_one_after_the_other() -> None:
    async def started() -> float:
        return sim.now()

    net = sim.Network(seed=1)
    for i in range(10):
        net.host(f"h{i}", main=started, ip6=True)
    report = net.run()
    # Each stack's duplicate address detection takes 1.4-2 s here; one after the other,
    # the mains started at 15.85 s.
    latest = max(float(cast(float, h.value)) for h in report.hosts.values())
    assert latest < 2.5


_AT_REST = """
import asyncio, time
from miragekit import sim

async def stuck():
    await asyncio.sleep(3)
    await asyncio.Event().wait()

wall = time.monotonic()
try:
    sim.run(stuck())  # the default idle_timeout: 10 s
except sim.SimDeadlock as e:
    print(time.monotonic() - wall < 2, e)
"""


def test_a_pure_simulation_at_rest_is_a_deadlock_at_once() -> None:
    # In a fresh interpreter: no thread another test left behind could wake the loop.
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    p = subprocess.run(
        [sys.executable, "-c", _AT_REST], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("True simulation deadlock at t=3.0: every task is waiting")
    assert "nothing outside the simulation (no real I/O, no other thread" in p.stdout


def test_another_thread_alive_still_gets_the_idle_timeout_to_wake_the_loop() -> None:
    async def woken_by_a_thread() -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        threading.Timer(0.3, lambda: loop.call_soon_threadsafe(fut.set_result, "woken")).start()
        return await fut

    assert sim.run(woken_by_a_thread(), idle_timeout=5) == "woken"


def test_a_host_serves_on_its_own_name_and_not_on_another_hosts() -> None:
    async def db() -> str:
        server = await asyncio.start_server(lambda r, w: w.close(), "db", 5432)
        udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("db", 53)
        )
        try:
            await asyncio.start_server(lambda r, w: w.close(), "api", 5433)
        except OSError as e:
            other = f"{e.errno} {e.strerror}"
        await asyncio.sleep(5)
        server.close()
        udp.close()
        return other

    async def api() -> bytes:
        await asyncio.sleep(1)
        reader, _ = await asyncio.open_connection("db", 5432)
        return await reader.read()

    net = sim.Network(seed=1)
    net.host("db", main=db)
    net.host("api", main=api)
    report = net.run(until=10)
    assert report.errors() == {}
    assert report["api"].value == b""
    assert report["db"].value == (
        "99 error while attempting to bind on address ('10.0.0.2', 5433): "
        "cannot assign requested address"
    )
