"""Ethernet II frames: a checked view and a value type (no FCS, no 802.1Q parsing)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ..macaddr import MacAddr
from ._error import WireError
from ._view import View, known

DST: Final = 0
SRC: Final = 6
ETHERTYPE: Final = 12
HEADER_LEN: Final = 14

_TYPE = struct.Struct("!H")


class EtherType(IntEnum):
    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100
    IPV6 = 0x86DD


def ethertype(value: int) -> EtherType | int:
    """``value`` as an :class:`EtherType` when known, else the plain int (kept, not rejected)."""
    return known(EtherType, value)


class EthernetFrame(View):
    """A view over the bytes of one frame; :meth:`checked` validates the length first."""

    __slots__ = ()

    def check_len(self) -> None:
        if len(self.buf) < HEADER_LEN:
            raise WireError("length", f"{len(self.buf)} bytes, an Ethernet header is 14")

    @property
    def dst(self) -> MacAddr:
        return MacAddr(self.buf[DST : DST + 6])

    @dst.setter
    def dst(self, mac: MacAddr) -> None:
        self.buf[DST : DST + 6] = mac.packed

    @property
    def src(self) -> MacAddr:
        return MacAddr(self.buf[SRC : SRC + 6])

    @src.setter
    def src(self, mac: MacAddr) -> None:
        self.buf[SRC : SRC + 6] = mac.packed

    @property
    def ethertype(self) -> EtherType | int:
        return ethertype(_TYPE.unpack_from(self.buf, ETHERTYPE)[0])

    @ethertype.setter
    def ethertype(self, value: int) -> None:
        _TYPE.pack_into(self.buf, ETHERTYPE, value)

    @property
    def payload(self) -> memoryview:
        return self.buf[HEADER_LEN:]


@dataclass(frozen=True, slots=True)
class EthernetRepr:
    """The meaning of an Ethernet header."""

    src: MacAddr
    dst: MacAddr
    ethertype: EtherType | int

    @classmethod
    def parse(cls, frame: EthernetFrame) -> EthernetRepr:
        frame.check_len()
        return cls(src=frame.src, dst=frame.dst, ethertype=frame.ethertype)

    def buffer_len(self) -> int:
        return HEADER_LEN

    def emit(self, frame: EthernetFrame) -> None:
        if not 0 <= self.ethertype <= 0xFFFF:
            raise ValueError(f"ethertype out of range: {self.ethertype}")
        frame.dst = self.dst
        frame.src = self.src
        frame.ethertype = self.ethertype
