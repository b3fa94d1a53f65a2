"""A stack reaches itself: its own address and 127.0.0.0/8 are delivered inside the
stack (RFC 1122 3.2.1.3), never put on the wire."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from pathlib import Path
from typing import Any

from miragekit import aio, v1
from miragekit.link import PcapNetif, VnetSwitch
from miragekit.result import EOF, Ok
from miragekit.stack import DirectStackV4, Static

A = ipaddress.IPv4Address


def ethertypes(pcap: Path) -> list[int]:
    """The EtherType of every frame in a classic pcap file."""
    data = pcap.read_bytes()
    off, out = 24, []
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        frame = data[off + 16 : off + 16 + incl]
        out.append(int.from_bytes(frame[12:14], "big"))
        off += 16 + incl
    return out


async def one_stack(pcap: Path) -> tuple[DirectStackV4, PcapNetif]:
    sw = VnetSwitch(seed=3)
    netif = PcapNetif(sw.add_interface("self"), pcap)
    r = await DirectStackV4.connect(v1.StackConfig("self", None, netif, Static("10.0.0.2/24")))
    assert isinstance(r, Ok)
    return r.value, netif


async def read_all(flow: Any) -> bytes:
    out = bytearray()
    while isinstance(r := await flow.read(), Ok):
        out += r.value
    assert r is EOF
    return bytes(out)


def test_tcp_and_udp_to_ourselves_stay_off_the_wire(tmp_path: Path) -> None:
    pcap = tmp_path / "wire.pcap"

    async def main() -> None:
        stack, netif = await one_stack(pcap)

        async def echo(flow: Any) -> None:
            data = await read_all(flow)
            await flow.write(data[::-1])

        stack.listen_tcpv4(port=7, callback=echo)
        payload = bytes(range(256)) * 4000  # 1 MB: many segments, both ways
        for dst in ("10.0.0.2", "127.0.0.1", "127.9.9.9"):
            r = await asyncio.wait_for(stack.tcpv4().create_connection((A(dst), 7)), 5)
            assert isinstance(r, Ok), (dst, r)
            flow = r.value
            assert await flow.write(payload) == Ok(None)
            await flow.shutdown_write()
            assert await asyncio.wait_for(read_all(flow), 10) == payload[::-1]
            await flow.close()

        got: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

        async def on_udp(src: Any, dst: Any, sport: int, data: memoryview) -> None:
            got.put_nowait((str(src), bytes(data)))

        stack.listen_udpv4(port=53, callback=on_udp)
        stack.udpv4().send(b"to lo", dest_ip=A("127.0.0.1"), dest_port=53)
        stack.udpv4().send(b"to me", dest_ip=A("10.0.0.2"), dest_port=53)
        assert await asyncio.wait_for(got.get(), 5) == ("127.0.0.1", b"to lo")
        assert await asyncio.wait_for(got.get(), 5) == ("10.0.0.2", b"to me")
        assert stack.counters()["ipv4"]["tx_loopback"] > 2 * len(payload) // 65536
        await stack.disconnect()
        netif.close()

    asyncio.run(main())
    types = ethertypes(pcap)
    assert types and set(types) == {0x0806}  # the gratuitous ARP only: no IPv4 frame


def test_asyncio_server_and_client_in_one_stack(tmp_path: Path) -> None:
    """The new user's case: serve and connect in one process on 127.0.0.1, localhost and
    the stack's own address."""
    pcap = tmp_path / "wire.pcap"

    async def main() -> list[Any]:
        stack, netif = await one_stack(pcap)

        async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.readline()).upper())
            writer.close()

        out = []
        with aio.bind(stack):
            server = await asyncio.start_server(upper, "127.0.0.1", 8080)
            for host in ("127.0.0.1", "localhost", "10.0.0.2"):
                reader, writer = await asyncio.open_connection(host, 8080)
                writer.write(b"hi\n")
                out.append((await reader.read(), writer.get_extra_info("sockname")[0]))
                writer.close()
            server.close()
        await stack.disconnect()
        netif.close()
        return out

    assert aio.run(main()) == [
        (b"HI\n", "127.0.0.1"),
        (b"HI\n", "127.0.0.1"),
        (b"HI\n", "10.0.0.2"),
    ]
    assert set(ethertypes(pcap)) == {0x0806}


def ip_protocols(pcap: Path) -> set[int]:
    """The transport protocols of the IPv4 and IPv6 packets in a pcap file."""
    data = pcap.read_bytes()
    off, out = 24, set()
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        frame = data[off + 16 : off + 16 + incl]
        etype = int.from_bytes(frame[12:14], "big")
        if etype == 0x0800:
            out.add(frame[14 + 9])
        elif etype == 0x86DD:
            out.add(frame[14 + 6])
        off += 16 + incl
    return out


def test_ipv6_loopback_and_own_address(tmp_path: Path) -> None:
    from miragekit.stack import IPv6Config

    pcap = tmp_path / "wire.pcap"

    async def main() -> list[Any]:
        sw = VnetSwitch(seed=4)
        netif = PcapNetif(sw.add_interface("self"), pcap)
        cfg = v1.StackConfig("self", None, netif, Static("10.0.0.2/24"))
        r = await DirectStackV4.connect(cfg, ip6=IPv6Config(cidrs=["fd00::2/64"], slaac=False))
        assert isinstance(r, Ok)
        stack = r.value

        async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.readline()).upper())
            writer.close()

        out = []
        with aio.bind(stack):
            server = await asyncio.start_server(upper, None, 8080)
            for host in ("::1", "fd00::2"):
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, 8080), 5)
                writer.write(b"six\n")
                out.append((await reader.read(), writer.get_extra_info("sockname")[0]))
                writer.close()
            server.close()
        assert stack.counters()["ipv6"]["tx_loopback"] > 0
        await stack.disconnect()
        netif.close()
        return out

    assert aio.run(main()) == [(b"SIX\n", "::1"), (b"SIX\n", "fd00::2")]
    assert ip_protocols(pcap) <= {0, 58}  # NDP and MLD (after a hop-by-hop header): no TCP
