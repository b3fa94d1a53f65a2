"""The --forward machinery in process: host sockets to an application on the virtual switch."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from miragekit import v1
from miragekit.link import VnetSwitch
from miragekit.result import Error, Ok
from miragekit.runner import Forward, Forwarder
from miragekit.runner._forward import vnet_forwarder
from miragekit.stack import DirectStackV4, Static

APP = ipaddress.IPv4Address("10.0.0.2")


async def echo(flow: v1.TCPFlow[Any]) -> None:
    while isinstance(r := await flow.read(), Ok):
        if await flow.write(r.value) != Ok(None):
            return


async def setup(seen: dict[str, Any]) -> tuple[DirectStackV4, Forwarder, Any, list[int]]:
    switch = seen["switch"] = VnetSwitch(seed=5)
    cfg = v1.StackConfig("app", None, switch.add_interface("app"), Static("10.0.0.2/24"))
    r = await DirectStackV4.connect(cfg)
    assert isinstance(r, Ok)
    app = r.value
    app.listen_tcpv4(port=7, callback=echo)
    rules = (Forward(0, 7), Forward(0, 81))  # nothing listens on 81
    fwd, host = await vnet_forwarder(rules, switch, ipaddress.IPv4Interface("10.0.0.1/24"), APP)
    seen.update(app=app, fwd=fwd, host=host)
    await fwd.start()
    return app, fwd, host, fwd.ports()


_CONN_FIELDS = (
    "_snd_una", "_snd_nxt", "_snd_max", "_snd_wnd", "_snd_wl1", "_snd_wl2", "_rcv_nxt",
    "_rcv_adv", "_rcv_fin", "_probe", "_retries", "_rtx_at", "_ack_at", "_ack_now",
    "_close_at", "_ka_at", "_tlp_at", "_rack_at", "_ts_recent", "_last_ack_sent",
)  # fmt: skip


def stall_report(stacks: dict[str, Any], fwd: Forwarder, switch: VnetSwitch) -> str:
    """Where everything waits: each task's stack, the forwarder's counters, every TCP
    connection's sequence space, windows and timers, each IPv4 layer's counters (what it
    dropped on output) and each switch port's drops, so a stalled run explains itself
    instead of ending in a bare TimeoutError."""
    lines = [f"loop time {asyncio.get_running_loop().time():.3f}", f"forwarder {fwd.counters}"]
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        frames = task.get_stack(limit=3)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in frames)
        lines.append(f"task {task.get_name()} waits in {where or '?'} on {task.get_coro()!r}")
    for name, stack in stacks.items():
        tcp = stack.tcpv4()
        ep = tcp.endpoint
        lines.append(
            f"{name} tcp: timer at {tcp._timer_at}, endpoint poll_at {ep.poll_at()}, flush "
            f"{'armed' if tcp._flush_handle else 'not armed'}, timers {[(c._ep_at, k) for k, c in ep.connections.items() if c._ep_at >= 0]}, "
            f"dirty {list(ep._dirty)}, active {list(ep._active)}, writers {tcp._writers}, "
            f"held ack {tcp._rx_ack is not None}, run {tcp._rx_run is not None}, "
            f"stats {dict(tcp.stats)}"
        )
        lines.append(f"{name} ipv4: {stack.ipv4().counters}")  # tx_too_big: dropped, DF
        for flow in tcp._flows.values():
            conn = flow.connection
            conn_fields = " ".join(f"{k[1:]}={getattr(conn, k, '?')}" for k in _CONN_FIELDS)
            sndbuf = getattr(getattr(conn, "_sndbuf", None), "size", "?")
            rcvbuf = len(getattr(conn, "_rcvbuf", b""))
            cwnd = getattr(getattr(conn, "_cc", None), "cwnd", "?")
            lines.append(
                f"  {flow!r} poll_at={conn.poll_at()} sndbuf={sndbuf} rcvbuf={rcvbuf} "
                f"cwnd={cwnd} {conn_fields}"
            )
            counts = {k: v for k, v in dict(getattr(conn, "stats", {})).items() if v}
            lines.append(f"    counts {counts}")
    for port in switch.interfaces():
        lines.append(f"switch port {port.name}: {port.get_stats_counters()} {port.counters}")
    return "\n".join(lines)


def run_explaining_stalls(
    main: Callable[[dict[str, Any]], Awaitable[None]], timeout: float = 60
) -> None:
    """Run ``main(seen)``; if it has not finished after ``timeout`` s, fail with
    :func:`stall_report` of what ``seen`` holds (``fwd``, ``switch`` and the stacks)."""

    async def guarded() -> None:
        seen: dict[str, Any] = {}
        task = asyncio.ensure_future(main(seen))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        report = "(not set up yet)"
        if {"fwd", "switch", "app", "host"} <= seen.keys():
            stacks = {"app": seen["app"], "host": seen["host"]}
            report = stall_report(stacks, seen["fwd"], seen["switch"])
        task.cancel()
        pytest.fail(f"stalled for {timeout} s:\n{report}", pytrace=False)

    asyncio.run(guarded())


def test_forward_counts_completed_failed_and_aborted_connections() -> None:
    async def main(seen: dict[str, Any]) -> None:
        app, fwd, host, (echo_port, dead_port) = await setup(seen)
        try:
            data = os.urandom(1 << 20)
            r, w = await asyncio.open_connection("127.0.0.1", echo_port)

            async def send() -> None:
                w.write(data)
                await w.drain()
                w.write_eof()  # half-close: the echo must still come back in full

            sender = asyncio.ensure_future(send())
            got = await r.read()
            await sender
            assert got == data
            w.close()
            # Refused on the application's side: the host client gets a reset too.
            r2, w2 = await asyncio.open_connection("127.0.0.1", dead_port)
            with pytest.raises(ConnectionResetError):
                await r2.read()
            w2.close()
            # The host client resets mid-conversation: the other side is aborted too.
            r3, w3 = await asyncio.open_connection("127.0.0.1", echo_port)
            w3.write(b"x" * 1000)
            await w3.drain()
            assert await r3.readexactly(1000) == b"x" * 1000
            sock = w3.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w3.transport.abort()  # with SO_LINGER 0: an RST
            for _ in range(200):
                if fwd.counters.active == 0 and fwd.counters.aborted + fwd.counters.completed == 2:
                    break
                await asyncio.sleep(0.01)
            c = fwd.counters
            assert (c.accepted, c.failed, c.active) == (3, 1, 0)
            assert (c.completed, c.aborted) == (1, 1)
            assert c.to_app == len(data) + 1000 and c.from_app == len(data) + 1000
        finally:
            await fwd.close()
            await host.disconnect()
            await app.disconnect()

    run_explaining_stalls(main)


def test_forward_passes_a_reset_on_as_a_reset_both_ways() -> None:
    """A host client's RST reaches the application as a reset (Error, not EOF), and an
    application's abort() reaches the host client as a reset (ECONNRESET, not EOF)."""

    async def main() -> None:
        switch = VnetSwitch(seed=5)
        cfg = v1.StackConfig("app", None, switch.add_interface("app"), Static("10.0.0.2/24"))
        app = (await DirectStackV4.connect(cfg)).unwrap()
        seen: asyncio.Queue[object] = asyncio.Queue()

        async def reads_until_the_end(flow: v1.TCPFlow[Any]) -> None:
            while isinstance(r := await flow.read(), Ok):
                pass
            await seen.put(r)

        async def resets(flow: v1.TCPFlow[Any]) -> None:
            await flow.read()
            getattr(flow, "abort")()  # noqa: B009 - abort is beyond v1.TCPFlow

        app.listen_tcpv4(port=7, callback=reads_until_the_end)
        app.listen_tcpv4(port=8, callback=resets)
        rules = (Forward(0, 7), Forward(0, 8))
        iface = ipaddress.IPv4Interface("10.0.0.1/24")
        fwd, host = await vnet_forwarder(rules, switch, iface, APP)
        await fwd.start()
        p7, p8 = fwd.ports()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", p7)
            w.write(b"hello")
            await w.drain()
            await asyncio.sleep(0.2)
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
            got = await asyncio.wait_for(seen.get(), 10)
            assert isinstance(got, Error), f"the app saw {got!r} for the client's reset"

            r, w = await asyncio.open_connection("127.0.0.1", p8)
            w.write(b"go")
            await w.drain()
            try:
                data = await asyncio.wait_for(r.read(), 10)
            except ConnectionResetError:
                pass
            else:
                raise AssertionError(f"the client saw {data!r}, not a reset")
            w.close()
        finally:
            await fwd.close()
            await host.disconnect()
            await app.disconnect()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_forward_udp_carries_datagrams_and_replies_per_client() -> None:
    """``udp:`` rules: each host client's datagrams reach the app's UDP port from a source
    port of its own, and the app's replies come back to that client only."""

    async def main() -> None:
        switch = VnetSwitch(seed=5)
        cfg = v1.StackConfig("app", None, switch.add_interface("app"), Static("10.0.0.2/24"))
        app = (await DirectStackV4.connect(cfg)).unwrap()
        udp = app.udpv4()

        async def echo_upper(src: Any, dst: Any, src_port: int, buf: memoryview) -> None:
            await udp.write(bytes(buf).upper(), dest_ip=src, dest_port=src_port, source_port=53)

        app.listen_udpv4(port=53, callback=echo_upper)
        iface = ipaddress.IPv4Interface("10.0.0.1/24")
        fwd, host = await vnet_forwarder((Forward(0, 53, "udp"),), switch, iface, APP)
        await fwd.start()
        (port,) = fwd.ports()
        socks = []
        try:
            loop = asyncio.get_running_loop()
            for _ in range(2):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setblocking(False)
                s.connect(("127.0.0.1", port))
                socks.append(s)
            for i, s in enumerate(socks):
                await loop.sock_sendall(s, f"client {i} ping".encode())
            for i, s in enumerate(socks):
                got = await asyncio.wait_for(loop.sock_recv(s, 2048), 5)
                assert got == f"CLIENT {i} PING".encode()
            c = fwd.counters
            assert (c.datagrams_to_app, c.datagrams_from_app) == (2, 2)
        finally:
            for s in socks:
                s.close()
            await fwd.close()
            await host.disconnect()
            await app.disconnect()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_forward_udp_to_the_echo_example_through_the_runner() -> None:
    from tests.apprun import running

    with running("examples/echo", "--net", "vnet", "--forward", "udp:0:7", ready="echo:") as r:
        line = r.wait_for(r"^miragekit: forwarding 127\.0\.0\.1:(\d+) -> 10\.0\.0\.2:7 \(UDP\)")
        port = int(line.group(1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"over udp", ("127.0.0.1", port))
            assert s.recvfrom(2048)[0] == b"over udp"
    assert any(line.endswith("; 1 datagrams to the app, 1 back") for line in r.lines), r.lines
