"""ICMPv4 (RFC 792) for the stack, sans-I/O: echo replies and rate-limited errors.

Errors (destination unreachable) are limited by a token bucket, as RFC 1812 4.3.2.8
asks, and never sent about broadcast/multicast packets or about ICMP errors
(RFC 1122 3.2.2).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ..wire import checksum
from ._ratelimit import TokenBucket

ECHO_REPLY: Final = 0
DEST_UNREACHABLE: Final = 3
ECHO_REQUEST: Final = 8
PORT_UNREACHABLE: Final = 3
PROTO_UNREACHABLE: Final = 2
TIME_EXCEEDED: Final = 11
REASSEMBLY_TIME_EXCEEDED: Final = 1  # its code
_ERROR_TYPES: Final = frozenset((3, 4, 5, 11, 12))

_HDR = struct.Struct("!BBHI")


@dataclass(slots=True)
class IcmpCounters:
    rx_messages: int = 0
    rx_malformed: int = 0  # short or bad checksum
    rx_echo_requests: int = 0
    echo_requests_ignored: int = 0  # to a broadcast address (RFC 1122 3.2.2.6 allows)
    rx_other: int = 0  # handed on (errors, replies, unknown types)
    tx_echo_replies: int = 0
    tx_errors: int = 0
    errors_rate_limited: int = 0


class Icmp:
    def __init__(self, *, error_rate: float = 100.0, error_burst: int = 20) -> None:
        self.counters = IcmpCounters()
        self._bucket = TokenBucket(error_rate, error_burst)
        self.consumed = False

    def input(
        self, msg: memoryview, *, answer: bool = True, verified: bool = False
    ) -> bytes | None:
        """Check one received message; return the echo reply to send, if any.

        ``answer`` is False for requests we must not answer (sent to a broadcast address);
        ``verified``: the device vouched for the checksum, which is then not summed.
        Afterwards :attr:`consumed` tells whether the message was used up here (malformed
        or an echo request) or should be handed on (errors, replies, unknown types).
        """
        c = self.counters
        c.rx_messages += 1
        self.consumed = True
        if len(msg) < 8 or (not verified and checksum(msg) != 0):
            c.rx_malformed += 1
            return None
        if msg[0] != ECHO_REQUEST:
            c.rx_other += 1
            self.consumed = False
            return None
        c.rx_echo_requests += 1
        if not answer:
            c.echo_requests_ignored += 1
            return None
        reply = bytearray(msg)
        reply[0] = ECHO_REPLY
        reply[2:4] = b"\0\0"
        reply[2:4] = checksum(reply).to_bytes(2, "big")
        c.tx_echo_replies += 1
        return bytes(reply)

    def _allow(self, now: float) -> bool:
        if self._bucket.allow(now):
            return True
        self.counters.errors_rate_limited += 1
        return False

    def unreachable(self, code: int, packet: memoryview, now: float) -> bytes | None:
        """The destination-unreachable message about ``packet`` (IP header + payload).

        ``None`` when rate-limited or when ``packet`` is itself an ICMP error.
        """
        return self.error(DEST_UNREACHABLE, code, packet, now)

    def error(self, icmp_type: int, code: int, packet: memoryview, now: float) -> bytes | None:
        """The error message ``icmp_type``/``code`` about ``packet``, as :meth:`unreachable`
        (e.g. time exceeded, code 1, when reassembly gives up: RFC 1122 3.3.2)."""
        hl = (packet[0] & 0x0F) * 4
        if packet[9] == 1 and len(packet) > hl and packet[hl] in _ERROR_TYPES:
            return None
        if not self._allow(now):
            return None
        quote = bytes(packet[: hl + 8])
        msg = bytearray(_HDR.size + len(quote))
        _HDR.pack_into(msg, 0, icmp_type, code, 0, 0)
        msg[8:] = quote
        msg[2:4] = checksum(msg).to_bytes(2, "big")
        self.counters.tx_errors += 1
        return bytes(msg)
