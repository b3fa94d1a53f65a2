"""What a device that wraps another (capture, impairment) passes straight through."""

from __future__ import annotations

from typing import Any

from ..macaddr import MacAddr
from ..v1 import Stats
from ._frame import FrameNetwork


class Wrapper:
    """The wrapped device's identity, MTU, MAC and statistics, unchanged."""

    def __init__(self, netif: FrameNetwork) -> None:
        self._inner = netif

    @property
    def inner(self) -> FrameNetwork:
        return self._inner

    def id(self) -> Any:
        return self._inner.id()

    @property
    def mtu(self) -> int:
        return self._inner.mtu

    def mac(self) -> MacAddr:
        return self._inner.mac()

    def get_stats_counters(self) -> Stats:
        return self._inner.get_stats_counters()
