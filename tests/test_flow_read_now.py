"""The direct stack's TCP flow read without a task: ``read_now`` and ``on_readable``
(what the asyncio transport of ``miragekit.netloop`` reads with)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from typing import Any

from tests.test_netloop import make_stacks

from miragekit.result import EOF, Ok


def test_on_readable_then_read_now_gives_data_then_nothing_then_eof() -> None:
    async def main() -> list[Any]:
        _, (c, s) = await make_stacks()
        accepted: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        seen: list[Any] = []

        async def on_flow(flow: Any) -> None:
            accepted.set_result(flow)
            await asyncio.sleep(3600)

        s.listen_tcpv4(port=80, callback=on_flow)
        r = await c.tcpv4().create_connection((IPv4Address("10.0.0.2"), 80))
        assert isinstance(r, Ok)
        client = r.value
        server = await accepted
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
