"""What a simulated host and a connection keep in memory (10,000 connections on 500
hosts must fit): no per-connection deque nobody uses, a compact IPv4 ID table."""

from __future__ import annotations

import asyncio
import random
import sys
import tracemalloc
from array import array
from typing import Any

from miragekit import sim
from miragekit.net._ipid import IpIdGenerator
from miragekit.netloop._transport import StackTransport


def test_the_ip_id_table_is_one_array_from_the_same_draws() -> None:
    for seed in range(3):
        rng, ref = random.Random(seed), random.Random(seed)
        gen = IpIdGenerator(rng)
        ref.randbytes(16)
        assert isinstance(gen._table, array) and gen._table.typecode == "H"
        assert gen._table.tolist() == [ref.getrandbits(16) for _ in range(2048)]
        assert rng.getstate() == ref.getstate()  # what follows draws the same
        assert sys.getsizeof(gen._table) < 5000  # a list of ints: ~70 KB


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def cluster(conns: int, transports: list[Any] | None = None) -> int:
    """Bytes traced while ``conns`` connections among 4 hosts are open and have echoed."""
    out = [0]

    def host(h: int) -> Any:
        async def main() -> None:
            await asyncio.start_server(echo, None, 7000)
            await asyncio.sleep(0.5)
            streams = [
                await asyncio.open_connection(f"h{(h + 1) % 4}", 7000) for _ in range(conns // 4)
            ]
            for r, w in streams:
                w.write(b"x" * 100)
                await r.readexactly(100)
            if transports is not None:
                transports.extend(w.transport for _, w in streams)
            await asyncio.sleep(5)

        return main

    def snap() -> None:
        out[0] = tracemalloc.get_traced_memory()[0]

    net = sim.Network(seed=1)
    for h in range(4):
        net.host(f"h{h}", main=host(h))
    net.at(3.0, snap)
    tracemalloc.start()
    try:
        net.run(until=4)
    finally:
        tracemalloc.stop()
    return out[0]


def test_an_idle_connection_makes_no_deque_it_does_not_use() -> None:
    """A connection that wrote straight into its flow and reads through ``read_now``
    has no writer queue, no writer wake-up and no reader event (each a deque of 760
    bytes, six per connection)."""
    transports: list[Any] = []
    cluster(8, transports)
    assert len(transports) == 8
    for t in transports:
        raw = t._transport if not isinstance(t, StackTransport) else t
        assert isinstance(raw, StackTransport)
        assert raw._out is None and raw._more is None and raw._reading is None


def test_bytes_per_connection_are_bounded() -> None:
    """Traced bytes per open connection (both ends, their streams and tasks): 29,100
    with the transport's three deques made up front, 24,150 without."""
    few, many = cluster(40), cluster(240)
    per_conn = (many - few) / 200
    assert per_conn < 26_000, per_conn
