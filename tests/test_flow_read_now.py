"""The direct stack's TCP flow read without a task: ``read_now`` and ``on_readable``
(what the asyncio transport of ``miragekit.netloop`` reads with)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from typing import Any, cast

import pytest
from tests.test_netloop import make_stacks

from miragekit import aio
from miragekit.net._tcp import TCPFlow
from miragekit.result import EOF, Ok


async def _accepted() -> tuple[Any, Any, Any, Any]:
    """Two stacks and one connection between them: (client stack, server stack, client
    flow, accepted server flow), the server's flow kept open by its task."""
    _, (c, s) = await make_stacks()
    accepted: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def on_flow(flow: Any) -> None:
        accepted.set_result(flow)
        await asyncio.sleep(3600)

    s.listen_tcpv4(port=80, callback=on_flow)
    r = await c.tcpv4().create_connection((IPv4Address("10.0.0.2"), 80))
    assert isinstance(r, Ok)
    return c, s, r.value, await accepted


def test_on_readable_then_read_now_gives_data_then_nothing_then_eof() -> None:
    async def main() -> list[Any]:
        c, s, client, server = await _accepted()
        seen: list[Any] = []
        assert server.read_now() is None  # nothing yet: a read would wait
        woke = asyncio.Event()

        def readable() -> None:
            got = server.read_now()
            seen.append(bytes(got.value) if isinstance(got, Ok) else got)
            woke.set()

        server.on_readable(readable)
        await client.write(b"hello")
        await asyncio.wait_for(woke.wait(), 5)
        woke.clear()
        seen.append(server.read_now())  # taken already: None
        await client.write(b"raw")
        await asyncio.wait_for(woke.wait(), 5)
        woke.clear()
        server.on_readable(lambda: woke.set())  # read_now_raw reads from here on
        await client.write(b"bytes")
        await asyncio.wait_for(woke.wait(), 5)
        woke.clear()
        raw = server.read_now_raw()  # the data as the bytearray it is, no Ok
        seen.append((type(raw).__name__, bytes(raw)))
        seen.append(server.read_now_raw())
        await client.close()
        await asyncio.wait_for(woke.wait(), 5)
        seen.append(server.read_now_raw())  # the end, as read_now gives it
        server.on_readable(None)
        await c.disconnect()
        await s.disconnect()
        return seen

    seen = asyncio.run(main())
    assert seen[:5] == [b"hello", None, b"raw", ("bytearray", b"bytes"), None]
    assert seen[-1] is EOF


def test_the_transport_reads_once_per_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """The asyncio transport takes each delivery with one ``read_now_raw`` (it gives all
    the flow holds, so a second read would find nothing): one read per request of a
    request/response exchange, and data with the FIN in one segment still reaches the
    protocol as data, then ``eof_received``."""
    reads = [0]
    real = TCPFlow.read_now_raw

    def counted(self: TCPFlow[Any]) -> Any:
        if self.get_dest()[1] != 80:  # the server's flow (the client's reads are its own)
            reads[0] += 1
        return real(self)

    monkeypatch.setattr(TCPFlow, "read_now_raw", counted)
    got: list[Any] = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            got.append(data)
            self.t.write(b"re:" + data)

        def eof_received(self) -> None:
            got.append(EOF)

    async def main() -> int:
        _, (c, s) = await make_stacks()
        loop = asyncio.get_running_loop()
        with aio.bind(s):
            server = await loop.create_server(Echo, "10.0.0.2", 80)
        r = await c.tcpv4().create_connection((IPv4Address("10.0.0.2"), 80))
        assert isinstance(r, Ok)
        flow = r.value
        for i in range(20):
            if i == 1:
                reads[0] = 0  # from the second request on (the first follows the start)
            assert await flow.write(b"GET /%d" % i) == Ok(None)
            reply = await flow.read()
            assert isinstance(reply, Ok) and bytes(reply.value) == b"re:GET /%d" % i
        per_request = reads[0]
        assert flow.send_now(b"last") == 4
        await flow.close()  # the FIN goes in the same segment as "last"
        for _ in range(200):
            if got[-1] is EOF:
                break
            await asyncio.sleep(0.01)
        server.close()
        await c.disconnect()
        await s.disconnect()
        return per_request

    per_request = aio.run(main())
    assert per_request == 19
    assert got == [*(b"GET /%d" % i for i in range(20)), b"last", EOF]


def test_a_flow_read_through_on_readable_is_told_of_data_without_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``on_readable`` set, the connection tells the flow of data by its reader call
    (``Connection.set_reader``): no ``DataReceived`` reaches the flow's event dispatch,
    and the callback still comes once per arrival. Without it (``on_readable(None)``),
    data comes as events again and ``read`` works as before."""
    kinds: list[str] = []
    real = TCPFlow._on_event

    def recorded(self: TCPFlow[Any], ev: Any) -> None:
        if self.get_dest()[1] != 80:  # the server's flow
            kinds.append(type(ev).__name__)
        real(self, ev)

    monkeypatch.setattr(TCPFlow, "_on_event", recorded)

    async def main() -> tuple[list[bytes], bytes]:
        c, s, client, server = await _accepted()
        got: list[bytes] = []
        woke = asyncio.Event()

        def readable() -> None:
            raw = server.read_now_raw()
            if isinstance(raw, bytearray):
                got.append(bytes(raw))
                woke.set()

        server.on_readable(readable)
        for i in range(5):
            await client.write(b"req %d" % i)
            await asyncio.wait_for(woke.wait(), 5)
            woke.clear()
        assert "DataReceived" not in kinds
        server.on_readable(None)  # events again: a task's read wakes on DataReceived
        await client.write(b"by read")
        later = await asyncio.wait_for(server.read(), 5)
        assert isinstance(later, Ok)
        await c.disconnect()
        await s.disconnect()
        return got, bytes(later.value)

    got, later = asyncio.run(main())
    assert got == [b"req %d" % i for i in range(5)]
    assert later == b"by read"
    assert "DataReceived" in kinds


def test_data_received_raising_goes_to_the_exception_handler_and_resets() -> None:
    """What ``data_received`` raises (fed by the transport's delivery itself, not a
    helper) goes to the loop's exception handler with asyncio's message; the connection
    is reset and the protocol hears ``connection_lost``, as asyncio's transports do."""
    seen: list[Any] = []

    class Broken(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            raise ValueError("bad request: " + data.decode())

        def connection_lost(self, exc: Exception | None) -> None:
            seen.append(("lost", repr(exc)))

    async def main() -> Any:
        _, (c, s) = await make_stacks()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(
            lambda _l, ctx: seen.append((ctx["message"], repr(ctx.get("exception"))))
        )
        with aio.bind(s):
            server = await loop.create_server(Broken, "10.0.0.2", 80)
        r = await c.tcpv4().create_connection((IPv4Address("10.0.0.2"), 80))
        assert isinstance(r, Ok)
        flow = r.value
        assert await flow.write(b"x") == Ok(None)
        after = await asyncio.wait_for(flow.read(), 5)
        server.close()
        await c.disconnect()
        await s.disconnect()
        return after

    after = aio.run(main())
    assert not isinstance(after, Ok)  # reset: no data, an error or the end
    assert seen[0] == (
        "Fatal error: protocol.data_received() call failed.",
        "ValueError('bad request: x')",
    )
    assert ("lost", "ValueError('bad request: x')") in seen


def test_a_task_woken_by_data_finds_its_flush_already_scheduled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Data told without an event still counts as the run serving a flow: the flush
    that delivered a request schedules the next one at once, so a task that
    ``data_received`` woke (asyncio streams, aiohttp's handler) writes its reply with that
    flush already queued behind it, and the reply leaves in the task's loop turn, not
    one turn later."""
    queued: list[bool] = []
    real = TCPFlow.send_now

    def recorded(self: TCPFlow[Any], buf: Any, nodelay: bool = False) -> int:
        if self.get_dest()[1] != 80:  # the server's flow
            queued.append(self._tcp._flush_handle is not None)
        return real(self, buf, nodelay)

    monkeypatch.setattr(TCPFlow, "send_now", recorded)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
        writer.close()

    async def main() -> None:
        _, (c, s) = await make_stacks()
        with aio.bind(s):
            server = await asyncio.start_server(echo, "10.0.0.2", 80)
        r = await c.tcpv4().create_connection((IPv4Address("10.0.0.2"), 80))
        assert isinstance(r, Ok)
        flow = r.value
        for i in range(10):
            assert await flow.write(b"ping %d" % i) == Ok(None)
            reply = await flow.read()
            assert isinstance(reply, Ok) and bytes(reply.value) == b"ping %d" % i
        await flow.close()
        server.close()
        await c.disconnect()
        await s.disconnect()

    aio.run(main())
    assert len(queued) == 10 and all(queued)
