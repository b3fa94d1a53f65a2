"""What a simulated host did on the wire: counters, connection events and its own pcap.

Why from the wire: a host's stack is replaced when it restarts and its TCP connections
come and go, but its port on the segment stays, so one observer per host sees every
frame it sent and received across restarts. Connections are told from the TCP flags of
those frames (a SYN out is a connect, a SYN-ACK out an accept, FINs both ways a close, a
RST a reset); a retransmission is a segment that starts before the highest sequence
number the host already sent on that connection (what Wireshark calls one too).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from ..v1 import Buffer

if TYPE_CHECKING:
    from ..link import PcapWriter

_SEQ: Final = struct.Struct("!I")
# From the IPv4 header without options to the TCP flags, the addresses and ports left
# out (a flow's key is their 12 bytes, taken in one slice): total length, fragment
# field, protocol, sequence number, data offset, flags.
_V4_TCP: Final = struct.Struct("!16xH2xHxB2x12xI4xBB")
# Bound once: compiled code calls a method of an object by name with a look-up in its
# type at every call (several hundred instructions), a bound method directly.
_V4_TCP_FIELDS: Final = _V4_TCP.unpack_from
_HEAD: Final = 14 + 60 + 60  # Ethernet, the longest IPv4 header, the longest TCP header
_SYN: Final = 0x02
_FIN: Final = 0x01
_RST: Final = 0x04
_ACK: Final = 0x10


class Event(NamedTuple):
    """One line of a run's event log: the virtual time and what happened."""

    time: float
    text: str

    def __str__(self) -> str:
        return f"{self.time:12.6f} {self.text}"


def format_events(events: Sequence[tuple[float, str]]) -> str:
    """The event log as text, one event a line."""
    return "".join(f"{Event(t, e)}\n" for t, e in events)


@dataclass(slots=True)
class HostCounters:
    """One host's traffic over the whole run (all its restarts): frames and bytes its
    stack sent and received, frames lost on its link (``drops`` by reason, as the
    switch's ``VnetCounters`` name them), TCP seen on its wire, and its stacks' own
    counters (``stack``, summed over restarts)."""

    frames_out: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    dropped: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    tcp_connects: int = 0
    tcp_accepts: int = 0
    tcp_retransmits: int = 0
    tcp_resets_out: int = 0
    tcp_resets_in: int = 0
    stack: dict[str, dict[str, int]] = field(default_factory=dict)


class _Flow:
    __slots__ = ("fin_in", "fin_out", "snd_max")

    def __init__(self) -> None:
        # The highest sequence number sent, -1 before the first: a plain int (inline in
        # the compiled object, not a boxed int to read from another cache line a frame).
        self.snd_max = -1
        self.fin_out = False
        self.fin_in = False


def _seq_before(a: int, b: int) -> bool:
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def _tcp_of(frame: Buffer) -> tuple[bytes, int, int, int] | None:
    """(flow key, seq, flags, sequence space used) of a TCP segment in an Ethernet frame,
    or None. The key is the source and destination addresses and ports as they stand in
    the frame, one after the other (:func:`_key_fields` reads them back)."""
    b = frame if type(frame) is memoryview and frame.format == "B" else memoryview(frame).cast("B")
    if len(b) < 54:
        return None
    if b[14] == 0x45 and b[12] == 8 and b[13] == 0:
        # The usual frame (IPv4 without options): one unpack, the same answer as below.
        tot, frag, proto, seq, off, flags = _V4_TCP_FIELDS(b)
        if proto != 6 or frag & 0x1FFF:
            return None
        used = tot - 20 - (off >> 4) * 4 + (flags & _SYN != 0) + (flags & _FIN != 0)
        return bytes(b[26:38]), seq, flags, max(used, 0)
    etype = (b[12] << 8) | b[13]
    if etype == 0x0800:
        ihl = (b[14] & 0x0F) * 4
        if b[23] != 6 or (((b[20] << 8) | b[21]) & 0x1FFF) or ihl < 20:
            return None
        addrs = bytes(b[26:34])
        t = 14 + ihl
        ip_payload = ((b[16] << 8) | b[17]) - ihl
    elif etype == 0x86DD:
        if b[20] != 6:
            return None
        addrs = bytes(b[22:54])
        t = 54
        ip_payload = (b[18] << 8) | b[19]
    else:
        return None
    if len(b) < t + 14:
        return None
    (seq,) = _SEQ.unpack_from(b, t + 4)
    flags = b[t + 13]
    used = ip_payload - (b[t + 12] >> 4) * 4
    used += (flags & _SYN != 0) + (flags & _FIN != 0)
    return addrs + bytes(b[t : t + 4]), seq, flags, max(used, 0)


def _key_fields(key: bytes) -> tuple[bytes, int, bytes, int]:
    """(source IP, source port, destination IP, destination port) of a flow key."""
    n = (len(key) - 4) >> 1
    sport = (key[2 * n] << 8) | key[2 * n + 1]
    dport = (key[2 * n + 2] << 8) | key[2 * n + 3]
    return key[:n], sport, key[n : 2 * n], dport


def _reverse(key: bytes) -> bytes:
    """The key of the other direction of a flow."""
    n = (len(key) - 4) >> 1
    p = 2 * n
    return key[n:p] + key[:n] + key[p + 2 :] + key[p : p + 2]


def _head(bufs: Sequence[Buffer]) -> Buffer:
    first = bufs[0]
    if len(bufs) == 1 or memoryview(first).nbytes >= _HEAD:
        return first
    out = bytearray()
    for p in bufs:
        out += memoryview(p).cast("B")[: _HEAD - len(out)]
        if len(out) >= _HEAD:
            break
    return out


class HostObserver:
    """Counts, logs and (with ``pcap``) records one host's frames, across its ports."""

    def __init__(
        self,
        name: str,
        log: Callable[[str], None],
        names: Mapping[bytes, str],
        pcap: PcapWriter | None,
    ) -> None:
        self.name = name
        self.counters = HostCounters()
        self.pcap = pcap
        self._log = log
        self._names = names
        self._flows: dict[bytes, _Flow] = {}  # by flow key (see _tcp_of)

    def _addr(self, ip: bytes, port: int) -> str:
        name = self._names.get(ip)
        if name is None:
            name = str(ipaddress.ip_address(ip))
            if ":" in name:
                name = f"[{name}]"
        return f"{name}:{port}"

    def _event(self, verb: str, key: bytes) -> None:
        src, sport, dst, dport = _key_fields(key)
        here, there = self._addr(src, sport), self._addr(dst, dport)
        self._log(f"{self.name}: {verb} {here} {there}")

    def sent(self, parts: Sequence[Buffer]) -> None:
        c = self.counters
        c.frames_out += 1
        if len(parts) == 1:  # a whole frame, as a stack's flush sends them
            head = parts[0]
            t = type(head)
            c.bytes_out += len(head) if t is bytearray or t is bytes else memoryview(head).nbytes
        else:
            for p in parts:
                c.bytes_out += memoryview(p).nbytes
            head = _head(parts)
        if self.pcap is not None:
            self.pcap.record(parts)
        self._segment_out(head)

    def sent_frames(self, frames: Sequence[Buffer]) -> None:
        """:meth:`sent` of each whole frame of a burst (what a stack's flush hands its
        port), in one call: no call and no tuple per frame.

        A stack's frame is bytes, and nearly always an ACK or data on a connection
        already seen, in IPv4 without options: read here from the frame itself (one
        unpack, one slice for the key), with nothing to do but move the connection's
        highest sequence number. Everything else goes the general way."""
        c = self.counters
        pcap = self.pcap
        flows = self._flows
        for f in frames:
            c.frames_out += 1
            if not isinstance(f, bytes):
                c.bytes_out += len(f) if type(f) is bytearray else memoryview(f).nbytes
                if pcap is not None:
                    pcap.record((f,))
                self._segment_out(f)
                continue
            c.bytes_out += len(f)
            if pcap is not None:
                pcap.record((f,))
            if len(f) < 54 or f[14] != 0x45 or f[12] != 8 or f[13] != 0:
                self._segment_out(f)  # not IPv4 without options (ARP, IPv6, ...)
                continue
            tot, frag, proto, seq, off, flags = _V4_TCP_FIELDS(f)
            if proto != 6 or frag & 0x1FFF:
                continue  # no TCP segment (what _tcp_of says of it)
            key = f[26:38]
            used = tot - 20 - (off >> 4) * 4
            if not flags & (_SYN | _FIN | _RST):
                flow = flows.get(key)
                if flow is not None:  # what _segment does with it, written out
                    if used > 0:
                        end = (seq + used) & 0xFFFFFFFF
                        top = flow.snd_max
                        if top < 0 or ((top - end) & 0xFFFFFFFF) >= 0x80000000:
                            if top >= 0 and ((seq - top) & 0xFFFFFFFF) >= 0x80000000:
                                c.tcp_retransmits += 1
                            flow.snd_max = end
                        else:
                            c.tcp_retransmits += 1
                    continue
            used += (flags & _SYN != 0) + (flags & _FIN != 0)
            self._segment(key, seq, flags, max(used, 0))

    def _segment_out(self, head: Buffer) -> None:
        """A frame this host sent (``head`` holds its headers), if a TCP segment."""
        seg = _tcp_of(head)
        if seg is not None:
            self._segment(*seg)

    def _segment(self, key: bytes, seq: int, flags: int, used: int) -> None:
        """A TCP segment this host sent: connection events, retransmissions, resets."""
        c = self.counters
        flow = self._flows.get(key)
        if flags & _SYN:
            if flow is None:
                flow = self._flows[key] = _Flow()
                if flags & _ACK:
                    c.tcp_accepts += 1
                    self._event("accept", key)
                else:
                    c.tcp_connects += 1
                    self._event("connect", key)
        elif flow is None:
            if flags & _RST:
                c.tcp_resets_out += 1
                self._event("reset sent (no connection)", key)
                return
            flow = self._flows[key] = _Flow()
        if used:
            end = (seq + used) & 0xFFFFFFFF
            top = flow.snd_max
            if top < 0 or _seq_before(top, end):
                if top >= 0 and _seq_before(seq, top):
                    c.tcp_retransmits += 1
                flow.snd_max = end
            else:
                c.tcp_retransmits += 1
        if flags & _RST:
            c.tcp_resets_out += 1
            del self._flows[key]
            self._event("reset sent", key)
        elif flags & _FIN and not flow.fin_out:
            flow.fin_out = True
            if flow.fin_in:
                del self._flows[key]
                self._event("closed", key)

    def received(self, frame: memoryview) -> None:
        self.seen(frame, frame.nbytes)

    def seen(self, frame: memoryview, size: int) -> None:
        """:meth:`received` of ``frame`` of ``size`` bytes: what a switch port that shows
        its frames (``VnetIf.set_tap``) calls, the size in hand (asked of the view, a
        look-up by name, for each of the 499 hosts a start-up broadcast reaches)."""
        c = self.counters
        c.frames_in += 1
        c.bytes_in += size
        if self.pcap is not None:
            self.pcap.record((frame,))
        if len(frame) < 54:
            return  # no TCP segment (ARP)
        if frame.format == "B" and frame[12] == 8 and frame[13] == 0:
            # Only a RST or a FIN matters here: most IPv4 frames are told by one byte.
            t = 14 + (frame[14] & 0x0F) * 4
            if len(frame) < t + 14 or not frame[t + 13] & (_RST | _FIN):
                return
        seg = _tcp_of(frame)
        if seg is None:
            return
        their_key, _seq, flags, _used = seg
        if not flags & (_RST | _FIN):
            return
        key = _reverse(their_key)
        flow = self._flows.get(key)
        if flags & _RST:
            c.tcp_resets_in += 1
            if flow is not None:
                del self._flows[key]
                self._event("reset by peer", key)
        elif flow is not None and not flow.fin_in:
            flow.fin_in = True
            if flow.fin_out:
                del self._flows[key]
                self._event("closed", key)

    def gone(self) -> None:
        """The host crashed: its connections vanish with it, without a word on the wire."""
        self._flows.clear()

    def add_drops(self, counters: object) -> None:
        """Fold a port's drop counters (a ``VnetCounters``) into the host's."""
        c = self.counters
        for f in dataclasses.fields(counters):  # type: ignore[arg-type]
            n = getattr(counters, f.name)
            if f.name.startswith("dropped_") and n:
                reason = f.name.removeprefix("dropped_")
                c.drops[reason] = c.drops.get(reason, 0) + n
                c.dropped += n

    def add_stack(self, counters: Mapping[str, Mapping[str, int]]) -> None:
        """Fold a stack's own counters into the host's (a restart makes a new stack)."""
        total = self.counters.stack
        for layer, values in counters.items():
            mine = total.setdefault(layer, {})
            for k, v in values.items():
                mine[k] = mine.get(k, 0) + v
