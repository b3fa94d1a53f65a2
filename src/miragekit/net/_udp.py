"""UDP (RFC 768) over :class:`IPv4` or :class:`IPv6`: demultiplexing by port, checksums,
ephemeral ports.

The code is the same over both families: the IP layer supplies the pseudo-header (through
``allocate_frame``/``checksum``) and the ICMP code for a closed port; on input the
pseudo-header sum is ``int(src) + int(dst) + 17 + length`` modulo 0xFFFF for both (a
128-bit address is congruent to the sum of its 16-bit words). Only IPv6 refuses a zero
checksum (RFC 8200 8.1).

Received datagrams for a listener are copied and handed to the application callback,
which runs eagerly (a task only if it suspends, see ``_eager``); everything else is
synchronous.
A datagram to a port with no listener is answered with ICMP port-unreachable
(rate-limited by the ICMP layer). ICMP and ICMPv6 errors about datagrams we sent go to the
error listener of their source port (:meth:`UDP.on_error`): a connected socket's owner
learns that way that nobody listens at the other end.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, Protocol, Self

from ..result import Error, Ok, UDPError
from ..v1 import UDP as UDPProtocol
from ..v1 import A, Buffer, UDPCallback
from ._eager import run_eager

PROTO_UDP: Final = 17
EPHEMERAL_LOW: Final = 49152
EPHEMERAL_HIGH: Final = 65535
_HDR = struct.Struct("!HHHH")

UDPErrorCallback = Callable[[int, int, "ipaddress.IPv4Address | ipaddress.IPv6Address", int], None]
"""``callback(icmp_type, code, remote, remote_port)``: an ICMP error about a datagram sent."""
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class UdpCounters:
    rx_datagrams: int = 0
    rx_malformed: int = 0  # short, impossible length, port 0
    rx_bad_checksum: int = 0
    rx_no_listener: int = 0
    rx_delivered: int = 0
    callback_errors: int = 0  # exceptions raised by application callbacks
    tx_datagrams: int = 0


class IPLayer(Protocol[A]):
    """What UDP needs of an IP layer (:class:`IPv4` and :class:`IPv6` have it)."""

    rng: random.Random

    @property
    def port_unreachable(self) -> int:
        """The ICMP code for a closed port (3 for ICMPv4, 4 for ICMPv6)."""
        ...

    def set_handler(
        self, proto: int, handler: Callable[[A, A, memoryview, bool], None] | None
    ) -> None: ...

    def reject_current(self, code: int) -> None: ...

    def allocate_frame(self, *, dst: A, proto: Literal["TCP", "UDP"]) -> tuple[memoryview, int]: ...

    def checksum(self, frame: Buffer, bufs: Sequence[Buffer]) -> int: ...

    def send(self, frame: Buffer, bufs: Sequence[Buffer]) -> None: ...


class UDP(Generic[A]):
    """UDP over an IP layer whose addresses are ``A``."""

    def __init__(self, ip: IPLayer[A], *, rng: random.Random | None = None) -> None:
        self._ip: IPLayer[A] = ip
        self._rng = rng or ip.rng
        self.counters = UdpCounters()
        self._listeners: dict[int, UDPCallback[A]] = {}
        self._error_listeners: dict[int, UDPErrorCallback] = {}
        set_error_handler = getattr(ip, "set_error_handler", None)
        if set_error_handler is not None:  # the IP layer tells whose datagram an error quotes
            set_error_handler(PROTO_UDP, self._icmp_error)

    @classmethod
    async def connect(
        cls, id: IPLayer[A], *, rng: random.Random | None = None
    ) -> Ok[Self] | Error[UDPError]:
        """UDP over ``id``; it registers itself as the IP layer's protocol-17 handler."""
        self = cls(id, rng=rng)
        id.set_handler(PROTO_UDP, self.receive)
        return Ok(self)

    def id(self) -> IPLayer[A]:
        return self._ip

    async def disconnect(self) -> None:
        self._ip.set_handler(PROTO_UDP, None)
        set_error_handler = getattr(self._ip, "set_error_handler", None)
        if set_error_handler is not None:
            set_error_handler(PROTO_UDP, None)

    def on_error(self, port: int, callback: UDPErrorCallback | None) -> None:
        """Call ``callback(icmp_type, code, remote, remote_port)`` for each ICMP error
        about a datagram we sent from ``port`` (``None`` stops)."""
        if callback is None:
            self._error_listeners.pop(port, None)
        else:
            self._error_listeners[port] = callback

    def _icmp_error(
        self,
        icmp_type: int,
        code: int,
        local: bytes,
        remote: bytes,
        quoted: memoryview,
        mtu: int | None,
    ) -> bool:
        """The IP layer's error handler: ``quoted`` starts with our datagram's header."""
        if len(quoted) < 4:
            return False
        sport, dport = struct.unpack_from("!HH", quoted)
        cb = self._error_listeners.get(sport)
        if cb is None:
            return False
        cb(icmp_type, code, ipaddress.ip_address(remote), dport)
        return True

    def listen(self, port: int, callback: UDPCallback[A] | None) -> None:
        """Bind ``callback`` to ``port`` (replacing an earlier one); ``None`` unbinds."""
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"port must be in 1..65535, got {port}")
        if callback is None:
            self._listeners.pop(port, None)
        else:
            self._listeners[port] = callback

    # --- input -----------------------------------------------------------------------------

    def _parse(
        self, src: A, dst: A, buf: memoryview, verified: bool
    ) -> tuple[int, int, memoryview] | None:
        c = self.counters
        c.rx_datagrams += 1
        n = len(buf)
        if n < 8:
            c.rx_malformed += 1
            return None
        sport, dport, length, csum = _HDR.unpack_from(buf)
        if length < 8 or length > n or dport == 0:
            c.rx_malformed += 1
            return None
        if not csum:
            if isinstance(src, ipaddress.IPv6Address):
                c.rx_malformed += 1  # no zero checksum over IPv6
                return None
        elif not verified:
            # Data and pseudo-header summed modulo 0xFFFF (see wire/_checksum): a correct
            # checksum makes the total a non-zero multiple of 0xFFFF.
            v = int.from_bytes(buf[:length], "big")
            if length & 1:
                v <<= 8
            v += int(src) + int(dst) + PROTO_UDP + length
            if v % 0xFFFF:
                c.rx_bad_checksum += 1
                return None
        return sport, dport, buf[8:length]

    def receive(self, src: A, dst: A, buf: memoryview, verified: bool = False) -> None:
        """The synchronous input path (the IP layer's protocol-17 handler); ``verified``:
        the device vouched for the checksum."""
        r = self._parse(src, dst, buf, verified)
        if r is None:
            return
        sport, dport, data = r
        cb = self._listeners.get(dport)
        if cb is None:
            self.counters.rx_no_listener += 1
            self._ip.reject_current(self._ip.port_unreachable)
            return
        self.counters.rx_delivered += 1
        run_eager(cb(src, dst, sport, memoryview(bytes(data))), self._callback_failed)

    def _callback_failed(self, e: BaseException) -> None:
        self.counters.callback_errors += 1
        _log.error("UDP callback failed", exc_info=e)

    async def input(
        self,
        src: A,
        dst: A,
        buf: memoryview,
        *,
        listeners: Callable[[int], UDPCallback[A] | None],
    ) -> None:
        r = self._parse(src, dst, memoryview(buf), False)
        if r is None:
            return
        sport, dport, data = r
        cb = listeners(dport)
        if cb is None:
            self.counters.rx_no_listener += 1
            self._ip.reject_current(self._ip.port_unreachable)
            return
        self.counters.rx_delivered += 1
        await cb(src, dst, sport, data)

    # --- output ----------------------------------------------------------------------------

    def send(
        self, buf: Buffer, *, dest_ip: A, dest_port: int, source_port: int | None = None
    ) -> None:
        """Send one datagram now (the synchronous form of :meth:`write`)."""
        if not 0 < dest_port <= 0xFFFF:
            raise ValueError(f"dest_port must be in 1..65535, got {dest_port}")
        if source_port is None:
            source_port = self._rng.randint(EPHEMERAL_LOW, EPHEMERAL_HIGH)
        elif not 0 <= source_port <= 0xFFFF:
            raise ValueError(f"source_port must be in 0..65535, got {source_port}")
        length = 8 + len(buf)
        limit = 0xFFFF - 20 if isinstance(dest_ip, ipaddress.IPv4Address) else 0xFFFF
        if length > limit:
            raise ValueError(f"buf: a UDP payload is at most {limit - 8} bytes, got {len(buf)}")
        ip = self._ip
        frame, hl = ip.allocate_frame(dst=dest_ip, proto="UDP")
        _HDR.pack_into(frame, hl, source_port, dest_port, length, 0)
        udp_hdr = frame[hl : hl + 8]
        csum = ip.checksum(frame[:hl], (udp_hdr, buf))
        frame[hl + 6 : hl + 8] = (csum or 0xFFFF).to_bytes(2, "big")
        self.counters.tx_datagrams += 1
        ip.send(frame[: hl + 8], (buf,))

    async def write(
        self,
        buf: Buffer,
        *,
        dest_ip: A,
        dest_port: int,
        source_port: int | None = None,
    ) -> None:
        self.send(buf, dest_ip=dest_ip, dest_port=dest_port, source_port=source_port)


_check4: type[UDPProtocol[ipaddress.IPv4Address]] = UDP[ipaddress.IPv4Address]
_check6: type[UDPProtocol[ipaddress.IPv6Address]] = UDP[ipaddress.IPv6Address]
