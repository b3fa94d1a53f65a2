"""An accepted connection of ``create_server`` on a stack: its protocol and transport are
made in the server's context, and it holds no task of its own besides the stack
listener's and the application's (a third, per connection, held about 650 bytes for the
connection's life)."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from miragekit import sim

TAG: contextvars.ContextVar[str] = contextvars.ContextVar("TAG", default="none")


def run(conns: int) -> dict[str, Any]:
    seen: dict[str, Any] = {"factory": [], "handler": [], "tasks": {}}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["handler"].append(TAG.get())
        TAG.set("changed by a handler")  # its own context: not the next connection's
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()

    async def server() -> None:
        TAG.set("server")
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.StreamReaderProtocol:
            seen["factory"].append(TAG.get())
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(), handler)

        srv = await loop.create_server(factory, None, 7000)
        await asyncio.sleep(1.0)
        seen["tasks"]["before"] = len(asyncio.all_tasks())
        await asyncio.sleep(2.0)
        seen["tasks"]["during"] = len(asyncio.all_tasks())
        srv.close()
        await asyncio.sleep(3.0)

    async def client() -> None:
        await asyncio.sleep(1.5)
        streams = [await asyncio.open_connection("srv", 7000) for _ in range(conns)]
        for r, w in streams:
            w.write(b"ping")
            assert await r.readexactly(4) == b"ping"
        await asyncio.sleep(2.0)
        for _, w in streams:
            w.close()

    net = sim.Network(seed=1)
    net.host("srv", main=server)
    net.host("cli", main=client)
    report = net.run(until=10)
    assert report.ok, report.errors()
    return seen


def test_accepted_connections_are_made_in_the_server_s_context() -> None:
    seen = run(3)
    assert seen["factory"] == ["server"] * 3
    assert seen["handler"] == ["server"] * 3


def test_an_accepted_connection_holds_two_tasks() -> None:
    """The stack listener's (serving the flow until it is over) and the application's
    handler: no third task in the server's context."""
    seen = run(4)
    assert (seen["tasks"]["during"] - seen["tasks"]["before"]) == 2 * 4, seen["tasks"]
