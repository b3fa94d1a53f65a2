"""A switch port's NETWORK stats (:class:`~miragekit.v1.Stats`) read from the port itself.

Why: the port counts every frame it hands on, and at 500 hosts a cluster's start-up hands
on ~5 million broadcasts. Counted in :class:`~miragekit.v1.Stats` (a regular class), each
frame cost two attribute look-ups by name and two stores; counted in the port's own
fields, two native additions. The object :meth:`VnetIf.get_stats_counters` returns stays
a live, writable ``Stats``: its fields are the port's. A module of its own, interpreted:
a class with properties over a regular base is no native class.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..v1 import Stats


class Counting(Protocol):
    """What holds the counts: a switch port."""

    _rx_bytes: int
    _rx_pkts: int
    _tx_bytes: int
    _tx_pkts: int


class PortStats(Stats):
    """``Stats`` whose fields are the counts of ``port``: reads and writes go there."""

    __slots__ = ("_port",)

    def __init__(self, port: Counting) -> None:  # no super().__init__: nothing of its own
        self._port = port

    @property
    def rx_bytes(self) -> int:
        return self._port._rx_bytes

    @rx_bytes.setter
    def rx_bytes(self, n: int) -> None:
        self._port._rx_bytes = n

    @property
    def rx_pkts(self) -> int:
        return self._port._rx_pkts

    @rx_pkts.setter
    def rx_pkts(self, n: int) -> None:
        self._port._rx_pkts = n

    @property
    def tx_bytes(self) -> int:
        return self._port._tx_bytes

    @tx_bytes.setter
    def tx_bytes(self, n: int) -> None:
        self._port._tx_bytes = n

    @property
    def tx_pkts(self) -> int:
        return self._port._tx_pkts

    @tx_pkts.setter
    def tx_pkts(self, n: int) -> None:
        self._port._tx_pkts = n

    def _values(self) -> tuple[int, int, int, int]:
        return self.rx_bytes, self.rx_pkts, self.tx_bytes, self.tx_pkts

    def __eq__(self, other: object) -> bool:
        """Equal to any ``Stats`` with the same counts, as a plain ``Stats`` would be."""
        if not isinstance(other, Stats):
            return NotImplemented
        return self._values() == (other.rx_bytes, other.rx_pkts, other.tx_bytes, other.tx_pkts)

    __hash__: Any = None  # mutable, as Stats

    def __reduce__(self) -> tuple[type[Stats], tuple[int, int, int, int]]:
        """A copy (``copy``, ``pickle``) is a plain ``Stats`` of the counts now, as a
        copy of a plain one is: not a second view of the port."""
        return Stats, self._values()

    def __repr__(self) -> str:
        rxb, rxp, txb, txp = self._values()
        return f"Stats(rx_bytes={rxb}, rx_pkts={rxp}, tx_bytes={txb}, tx_pkts={txp})"
