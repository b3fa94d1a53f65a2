"""The transport's reads and writes run in its TransportIO (compiled in the optional
build): asyncio's streams call ``write`` and ``is_closing`` bound to it, the flow calls
back its ``deliver``, and a subclass that overrides a method keeps its own."""

from __future__ import annotations

import asyncio
from typing import Any

from miragekit import aio
from miragekit.netloop._transport import StackTransport
from miragekit.netloop._transport_io import TransportIO


class FakeFlow:
    """A flow with ``read_now_raw``, ``send_now`` and ``on_readable``, as a stack's."""

    def __init__(self) -> None:
        self.incoming: list[bytearray] = []
        self.sent: list[bytes] = []
        self.readable: Any = None

    def on_readable(self, callback: Any) -> None:
        self.readable = callback

    def read_now_raw(self) -> bytearray | None:
        return self.incoming.pop(0) if self.incoming else None

    def send_now(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    async def close(self) -> None:
        pass


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True

    def data_received(self, data: bytes) -> None:
        self.data.append(data)


class Counting(StackTransport):
    def __init__(self, *args: Any) -> None:
        self.writes: list[bytes] = []
        super().__init__(*args)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        super().write(data)


def test_write_is_closing_and_deliver_are_the_transport_io_s() -> None:
    async def main() -> tuple[StackTransport, FakeFlow, Recorder]:
        loop = asyncio.get_running_loop()
        flow, proto = FakeFlow(), Recorder()
        t = StackTransport(loop, flow, proto, {})
        await asyncio.sleep(0)  # connection_made, then delivery starts
        flow.incoming.append(bytearray(b"in"))
        flow.readable()
        t.write(b"out")
        assert not t.is_closing()
        t.close()
        assert t.is_closing() and t._io.closing
        await asyncio.sleep(0)
        return t, flow, proto

    t, flow, proto = asyncio.run(main())
    io = t._io
    assert isinstance(io, TransportIO)
    assert t.write == io.write
    assert t.is_closing == io.is_closing
    assert flow.readable is None or flow.readable == io.deliver
    assert proto.made and proto.data == [b"in"]
    assert flow.sent == [b"out"]


def test_the_flow_is_given_the_transport_io_s_deliver() -> None:
    async def main() -> tuple[StackTransport, Any]:
        t = StackTransport(asyncio.get_running_loop(), flow := FakeFlow(), Recorder(), {})
        given = flow.readable
        t.abort()
        await asyncio.sleep(0)
        return t, given

    t, given = asyncio.run(main())
    assert given == t._io.deliver


def test_a_subclass_s_write_is_its_own() -> None:
    async def main() -> tuple[Counting, FakeFlow]:
        loop = asyncio.get_running_loop()
        flow = FakeFlow()
        t = Counting(loop, flow, Recorder(), {})
        t.write(b"one")
        t.writelines([b"two"])
        t.abort()
        await asyncio.sleep(0)
        return t, flow

    t, flow = asyncio.run(main())
    assert t.write.__func__ is Counting.write  # type: ignore[attr-defined]
    assert t.is_closing == t._io.is_closing
    assert t.writes == [b"one", b"two"]
    assert flow.sent == [b"one", b"two"]


def test_flow_transport_keeps_the_flow_rule() -> None:
    async def main() -> None:
        flow = FakeFlow()
        flow.get_dest = lambda: ("10.0.0.1", 80)  # type: ignore[attr-defined]
        t = aio.FlowTransport(flow, Recorder(), asyncio.get_running_loop())  # type: ignore[arg-type]
        assert t.write.__func__ is vars(aio.FlowTransport)["write"]  # type: ignore[attr-defined]
        t.write(b"x")
        t.close()
        try:
            t.write(b"y")
        except RuntimeError:
            pass
        else:
            raise AssertionError("a write after close must raise")
        await asyncio.sleep(0)
        assert flow.sent == [b"x"]

    asyncio.run(main())


def test_a_transport_has_no_dict() -> None:
    """Its attributes are slots, as asyncio's transports': an echo reads them on both
    ends, and a dict's values would be one more object to reach (cold at 10,000
    connections)."""

    async def main() -> list[StackTransport]:
        loop = asyncio.get_running_loop()
        flow = FakeFlow()
        flow.get_dest = lambda: ("10.0.0.1", 80)  # type: ignore[attr-defined]
        made = [
            StackTransport(loop, flow, Recorder(), {}),
            aio.FlowTransport(flow, Recorder(), loop),  # type: ignore[arg-type]
        ]
        for t in made:
            t.abort()
        await asyncio.sleep(0)
        return made

    for t in asyncio.run(main()):
        assert not hasattr(t, "__dict__")
        try:
            t.anything = 1  # type: ignore[attr-defined]
        except AttributeError:
            pass
        else:
            raise AssertionError("a transport took an attribute it has no slot for")


def test_done_is_made_when_asked_for() -> None:
    """A client's transport seldom waits for its end: no future until ``done`` is asked
    for; asked before the loss it is resolved by it, asked after it is resolved."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        unasked = StackTransport(loop, FakeFlow(), Recorder(), {})
        before = StackTransport(loop, FakeFlow(), Recorder(), {})
        after = StackTransport(loop, FakeFlow(), Recorder(), {})
        await asyncio.sleep(0)
        asked = before.done
        assert not asked.done() and before.done is asked
        for t in (unasked, before, after):
            t.abort()
        await asyncio.sleep(0)
        assert asked.done() and before.done is asked
        assert unasked._done is not None and not isinstance(unasked._done, asyncio.Future)
        assert after.done.done() and after.done is after.done

    asyncio.run(main())
