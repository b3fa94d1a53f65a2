"""An in-memory NETWORK + FrameLink for stack tests: records what is sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from scapy.layers.l2 import Ether

from miragekit.macaddr import MacAddr
from miragekit.result import Ok
from miragekit.v1 import Buffer, FrameCallback, Network, Stats

US = "10.0.0.2"
PEER = "10.0.0.1"
OUR_MAC = "02:00:00:00:00:02"
PEER_MAC = "02:00:00:00:00:01"


class MemLink:
    """A NETWORK + FrameLink that records what is sent; tests inject frames directly."""

    def __init__(self, mtu: int = 1500) -> None:
        self.sent: list[bytes] = []
        self._mtu = mtu
        self.receiver: Any = None
        self._stats = Stats()

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self]:
        return Ok(cls())

    def id(self) -> str:
        return "mem"

    async def disconnect(self) -> None:
        pass

    @property
    def mtu(self) -> int:
        return self._mtu

    def set_receiver(self, fn: Any) -> None:
        self.receiver = fn

    def send(self, frame: Buffer) -> None:
        self.sent.append(bytes(frame))

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        self.sent.append(b"".join(bufs))

    async def write(self, buf: Buffer) -> None:
        self.send(buf)

    async def writev(self, bufs: Sequence[Buffer]) -> None:
        self.sendv(bufs)

    async def listen(self, fn: FrameCallback) -> None:
        pass

    def mac(self) -> MacAddr:
        return MacAddr(OUR_MAC)

    def get_stats_counters(self) -> Stats:
        return self._stats

    def reset_stats_counters(self) -> None:
        pass

    def take(self) -> list[Any]:
        out = [Ether(f) for f in self.sent]
        self.sent.clear()
        return out


_check: type[Network] = MemLink
