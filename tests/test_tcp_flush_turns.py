"""The driver's flush after the tasks it woke (``TCP._flush``): a reply or a FIN that a
woken task writes leaves in that task's loop turn, not a turn later, and the wire is the
same as with the flush each write schedules for the next turn."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.net import TCP, IPv4Stack
from miragekit.result import Ok


def _without_flush_after_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver as before: ``_run`` never asks for the flush after the tasks."""
    run = TCP._run

    def run_only(self: TCP[Any]) -> bool:
        run(self)
        return False

    monkeypatch.setattr(TCP, "_run", run_only)


async def _echo_pair(frames: list[bytes]) -> tuple[IPv4Stack, IPv4Stack, TCP[Any], TCP[Any]]:
    """Two stacks on a switch (every frame also to ``frames``), an echo server on the
    second: as ``bench/tcp_conns.py``'s server, it reads, writes back, and closes at the
    end of the stream."""
    sw = VnetSwitch()
    sw.add_interface("mon", mirror=True).set_receiver(lambda f: frames.append(bytes(f)))
    link = LinkParams(latency=0.0005)
    sa = await IPv4Stack.connect(sw.add_interface("a", link=link), cidr="10.0.0.1/24")
    sb = await IPv4Stack.connect(sw.add_interface("b", link=link), cidr="10.0.0.2/24")
    client, server = TCP(sa.ipv4), TCP(sb.ipv4)

    async def echo(flow: Any) -> None:
        while isinstance(r := await flow.read(), Ok):
            if not isinstance(await flow.write(r.value), Ok):
                return

    server.listen(7, echo)
    return sa, sb, client, server


def _wire() -> list[bytes]:
    """Every frame of ten echo connections (connect, 1 byte each way, the client closes
    first), in simulated time."""
    frames: list[bytes] = []

    async def main() -> None:
        _, _, client, _ = await _echo_pair(frames)
        for i in range(10):
            r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 7))
            assert isinstance(r, Ok)
            assert await r.value.write(b"%d" % i) == Ok(None)
            got = await r.value.read()
            assert isinstance(got, Ok) and bytes(got.value) == b"%d" % i
            await r.value.close()
            await asyncio.sleep(0.05)

    sim.run(main(), seed=1)
    return frames


def test_the_wire_is_the_same_as_with_the_flush_a_turn_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = _wire()
    _without_flush_after_tasks(monkeypatch)
    before = _wire()
    # SYN, SYN-ACK, ACK, data, echo, FIN (with the echo's ACK), FIN, ACK each (and ARP).
    assert len(now) >= 10 * 8
    assert now == before


def _turns_to_reply() -> tuple[int, int]:
    """Loop turns (selector polls) from the server's read of a request to its echo
    leaving, and from its read of the end of the stream to its FIN leaving."""
    out: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        turns = 0
        selector: Any = loop._selector  # type: ignore[attr-defined]
        select = selector.select

        def counting(timeout: float | None = None) -> Any:
            nonlocal turns
            turns += 1
            return select(timeout)

        selector.select = counting
        _, sb, client, server = await _echo_pair([])
        read_at: list[int] = []
        sent_at: list[int] = []
        send_frames = sb.ipv4.send_frames
        send_split = sb.ipv4.send_split

        def sent() -> None:
            if read_at and len(sent_at) < len(read_at):
                sent_at.append(turns)

        def recording(frames: Any) -> None:
            sent()
            send_frames(frames)

        def recording_split(heads: Any, bodies: Any) -> None:
            sent()
            send_split(heads, bodies)

        # Both ways frames leave: whole, and headers and payload apart.
        sb.ipv4.send_frames = recording  # type: ignore[method-assign]
        sb.ipv4.send_split = recording_split  # type: ignore[method-assign]

        async def echo(flow: Any) -> None:
            while True:
                r = await flow.read()
                read_at.append(turns)
                if not isinstance(r, Ok) or not isinstance(await flow.write(r.value), Ok):
                    return

        server.listen(7, echo)  # in place of the plain echo: note the turns
        r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 7))
        assert isinstance(r, Ok)
        assert await r.value.write(b"x") == Ok(None)
        assert await r.value.read() == Ok(memoryview(b"x"))
        await r.value.close()
        for _ in range(100):
            if len(sent_at) == 2:
                break
            await asyncio.sleep(0.01)
        selector.select = select
        assert len(read_at) == len(sent_at) == 2, (read_at, sent_at)
        out.extend(s - r for r, s in zip(read_at, sent_at, strict=True))

    asyncio.run(main())
    return out[0], out[1]


def test_a_reply_and_a_fin_leave_in_the_turn_of_the_task_that_wrote_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _turns_to_reply() == (0, 0)
    _without_flush_after_tasks(monkeypatch)
    assert _turns_to_reply() == (1, 1)  # what the flush after the tasks saves
