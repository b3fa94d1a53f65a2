"""The stack's asyncio transport hands the protocol the peer's end once, as asyncio does,
also when the last data and the FIN arrive together (two read callbacks queued for one
delivery run)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from miragekit.link import VnetSwitch
from miragekit.net import TCP as TCPLayer
from miragekit.net import IPv4Stack
from miragekit.netloop._transport import StackTransport
from miragekit.result import Ok


class Recorder(asyncio.Protocol):
    def __init__(self, calls: list[Any]) -> None:
        self.calls = calls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("made")

    def data_received(self, data: bytes) -> None:
        self.calls.append(("data", bytes(data)))

    def eof_received(self) -> bool:
        self.calls.append("eof")
        return True  # keep the transport open, as asyncio's streams do


async def _pair() -> tuple[TCPLayer[Any], TCPLayer[Any]]:
    """A client's and a server's TCP, 10.0.0.1 and 10.0.0.2 on one virtual switch."""
    sw = VnetSwitch()
    sa = await IPv4Stack.connect(sw.add_interface("a"), cidr="10.0.0.1/24")
    sb = await IPv4Stack.connect(sw.add_interface("b"), cidr="10.0.0.2/24")
    return TCPLayer(sa.ipv4), TCPLayer(sb.ipv4)


async def _ours() -> list[Any]:
    calls: list[Any] = []
    client, server = await _pair()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transports: list[StackTransport] = []

    async def serve(flow: Any) -> None:
        transports.append(StackTransport(loop, flow, Recorder(calls), {}))
        await done

    server.listen(80, serve)
    r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 80))
    assert isinstance(r, Ok)
    flow = r.value
    await asyncio.sleep(0.05)
    # The data and the FIN leave in one driver run, so they arrive in one batch.
    flow.connection.send(b"hello")
    flow.connection.close()
    client._poke(flow)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if "eof" in calls:
            break
    await asyncio.sleep(0.1)  # any second delivery would come by now
    done.set_result(None)
    transports[0].abort()
    return calls


async def _asyncio_own() -> list[Any]:
    calls: list[Any] = []
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: Recorder(calls), "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"hello")
        s.shutdown(socket.SHUT_WR)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if "eof" in calls:
                break
        await asyncio.sleep(0.1)
    srv.close()
    return calls


def test_eof_received_once_when_data_and_fin_arrive_together() -> None:
    want = ["made", ("data", b"hello"), "eof"]
    assert asyncio.run(_asyncio_own()) == want
    assert asyncio.run(_ours()) == want


async def _data_waiting_before_the_transport() -> list[Any]:
    """The peer's bytes are already in the flow when the transport is made (a server that
    wraps an accepted flow a moment late, or data on the handshake's last ACK)."""
    calls: list[Any] = []
    client, server = await _pair()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transports: list[StackTransport] = []

    async def serve(flow: Any) -> None:
        await asyncio.sleep(0.1)  # the client's bytes arrive meanwhile
        transports.append(StackTransport(loop, flow, Recorder(calls), {}))
        await done

    server.listen(80, serve)
    r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 80))
    assert isinstance(r, Ok)
    assert isinstance(await r.value.write(b"early"), Ok)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(calls) >= 2:
            break
    done.set_result(None)
    transports[0].abort()
    return calls


def test_connection_made_comes_before_data_already_waiting() -> None:
    assert asyncio.run(_data_waiting_before_the_transport())[:2] == ["made", ("data", b"early")]
