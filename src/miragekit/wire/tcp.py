"""The TCP header (RFC 9293) with its options (RFC 7323, RFC 2018): a view and a value.

Two levels, as in smoltcp's ``wire``: :class:`TCPPacket` is a checked view over a buffer
(field getters/setters, checksum fill and verify), :class:`TCPRepr` holds only the meaning
(``parse``, ``buffer_len``, ``emit``). Untrusted bytes go through :meth:`TCPRepr.parse`,
which raises a :class:`TCPParseError` (a ``ValueError``) naming the offending field;
``emit`` into a buffer of exactly ``buffer_len()`` bytes cannot fail.

``TCPRepr`` is a ``NamedTuple`` rather than a frozen dataclass: it is immutable and
compared by value just the same, and it is built per segment on the hot path, where a
tuple is several times cheaper to create.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ..v1 import Buffer
from ._checksum import FOLD_FROM, checksum_v, pseudo_sum, residue
from ._view import UInt, View

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "HEADER_LEN",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "TCPChecksumError",
    "TCPPacket",
    "TCPParseError",
    "TCPRepr",
    "flags_str",
]

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

PROTOCOL = 6
HEADER_LEN = 20
MAX_OPTIONS_LEN = 40

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

MAX_WSCALE = 14

_HDR = struct.Struct("!HHIIBBHHH")
_MSS = struct.Struct("!BBH")
_TS = struct.Struct("!BBBBII")
_II = struct.Struct("!II")
_NOP_NOP_TS = bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10))
_NOP_NOP_TS_WORD = int.from_bytes(_NOP_NOP_TS, "big")
_HDR_TS = struct.Struct("!HHIIBBHHHIII")  # the header, one option word, TSval, TSecr

_tuple_new = tuple.__new__
# A SYN's usual options (MSS, SACK-permitted, timestamps, window scale: 20 bytes) in the
# two orders met in practice, each read in one unpack (:func:`_syn_options`): Linux's
# (MSS; SACK-permitted, TS; NOP, WS) and ours (MSS; NOP, WS; SACK-permitted, TS).
_SYN_LINUX = struct.Struct("!HHIIIHBB")
_SYN_OURS = struct.Struct("!HHIIII")
_MSS_WORD = OPT_MSS << 8 | 4
_SACKP_TS_WORD = (OPT_SACK_PERMITTED << 24) | (2 << 16) | (OPT_TIMESTAMP << 8) | 10
_NOP_WS_HALF = OPT_NOP << 8 | OPT_WSCALE

_FLAG_NAMES = (
    (SYN, "S"),
    (FIN, "F"),
    (RST, "R"),
    (PSH, "P"),
    (ACK, "A"),
    (URG, "U"),
    (ECE, "E"),
    (CWR, "W"),
)


def flags_str(flags: int) -> str:
    """Short tcpdump-style flag letters, for test messages and traces."""
    return "".join(name for bit, name in _FLAG_NAMES if flags & bit) or "."


class TCPParseError(ValueError):
    """Malformed TCP bytes; ``field`` names the part that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"tcp {field}: {message}")
        self.field = field


class TCPChecksumError(TCPParseError):
    """The checksum over the pseudo-header and segment does not verify."""

    def __init__(self) -> None:
        super().__init__("checksum", "does not verify")


def _fill_checksum_v4(buf: memoryview | bytearray, src: bytes, dst: bytes) -> None:
    """Store the checksum of segment ``buf`` between IPv4 addresses ``src`` and ``dst``.

    One big-integer residue (wire/_checksum) plus the pseudo-header, reduced once: never
    all zero, as the protocol number is in it, so the ones'-complement sum is never 0.
    """
    n = len(buf)
    r = residue(buf) + int.from_bytes(src, "big") + int.from_bytes(dst, "big") + PROTOCOL + n
    r %= 0xFFFF
    buf[16:18] = (0xFFFF - r if r else 0).to_bytes(2, "big")


class TCPPacket(View):
    """A view over a TCP segment in a buffer: offsets, getters, setters, checksum."""

    __slots__ = ()

    @classmethod
    def new_checked(cls, buffer: Buffer) -> TCPPacket:
        return cls.checked(memoryview(buffer))

    @property
    def buffer(self) -> memoryview:
        return self.buf

    def check_len(self) -> None:
        n = len(self.buf)
        if n < HEADER_LEN:
            raise TCPParseError("length", f"{n} bytes is shorter than the 20-byte header")
        hl = self.header_len
        if hl < HEADER_LEN:
            raise TCPParseError("data_offset", f"{hl} bytes is below the minimum 20")
        if hl > n:
            raise TCPParseError("data_offset", f"{hl} bytes exceeds the {n}-byte segment")

    src_port = UInt(0)
    dst_port = UInt(2)
    seq = UInt(4, 4)
    ack = UInt(8, 4)
    flags = UInt(13, 1)
    window = UInt(14)
    checksum = UInt(16)
    urgent = UInt(18)

    @property
    def header_len(self) -> int:
        return (self.buf[12] >> 4) * 4

    @header_len.setter
    def header_len(self, v: int) -> None:
        self.buf[12] = (v // 4) << 4

    @property
    def options(self) -> memoryview:
        return self.buffer[HEADER_LEN : self.header_len]

    @property
    def payload(self) -> memoryview:
        return self.buffer[self.header_len :]

    def fill_checksum(self, src: bytes, dst: bytes) -> None:
        """Compute and store the checksum over the pseudo-header and the whole segment."""
        buf = self.buffer
        buf[16:18] = b"\0\0"
        if len(src) != 4 or len(dst) != 4:
            init = pseudo_sum(src, dst, PROTOCOL, len(buf))
            self.checksum = checksum_v((buf,), init)
            return
        _fill_checksum_v4(buf, src, dst)

    def fill_partial_checksum(self, src: bytes, dst: bytes) -> None:
        """Store only the folded pseudo-header sum, as checksum offload (NEEDS_CSUM) wants."""
        s = pseudo_sum(src, dst, PROTOCOL, len(self.buffer)) % 0xFFFF
        self.checksum = s

    def verify_checksum(self, src: bytes, dst: bytes) -> bool:
        init = pseudo_sum(src, dst, PROTOCOL, len(self.buffer))
        return checksum_v((self.buffer,), init) == 0


def _syn_options(opts: memoryview) -> tuple[int, int, int, int] | None:
    """``(mss, wscale, TSval, TSecr)`` when the 20 bytes of options ``opts`` are MSS,
    SACK-permitted, timestamps and window scale in one of the usual orders (SYNs from
    Linux and from us), each of its right length: what :func:`_parse_options` gives for
    them (SACK-permitted true, no SACK blocks or other options), a shift above 14 read
    as 14. Else None: the general walk reads them."""
    k, mss, w, tsv, tse, nopws, wlen, ws = _SYN_LINUX.unpack_from(opts)
    if k == _MSS_WORD and w == _SACKP_TS_WORD and nopws == _NOP_WS_HALF and wlen == 3:
        return mss, min(ws, MAX_WSCALE), tsv, tse
    k, mss, w1, w2, tsv, tse = _SYN_OURS.unpack_from(opts)
    if k == _MSS_WORD and w1 >> 8 == 0x010303 and w2 == _SACKP_TS_WORD:
        return mss, min(w1 & 0xFF, MAX_WSCALE), tsv, tse
    return None


def _parse_options(
    opts: memoryview,
) -> tuple[
    int | None,
    int | None,
    bool,
    tuple[tuple[int, int], ...],
    tuple[int, int] | None,
    tuple[tuple[int, bytes], ...],
]:
    mss: int | None = None
    wscale: int | None = None
    sack_perm = False
    sack: tuple[tuple[int, int], ...] = ()
    ts: tuple[int, int] | None = None
    unknown: list[tuple[int, bytes]] = []
    i = 0
    n = len(opts)
    while i < n:
        kind = opts[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            break  # no length byte: the rest is not options (Linux stops here too)
        length = opts[i + 1]
        if length < 2 or i + length > n:
            break  # a "silly" length: stop, keep what was parsed
        # A known option of the wrong length is skipped, and the segment kept, as
        # Linux does (tcp_parse_options): a SYN with one is answered, not dropped.
        if kind == OPT_MSS:
            if length == 4:
                mss = (opts[i + 2] << 8) | opts[i + 3]
        elif kind == OPT_WSCALE:
            if length == 3:
                # RFC 7323 2.3: a shift above 14 is used as 14.
                wscale = min(opts[i + 2], MAX_WSCALE)
        elif kind == OPT_SACK_PERMITTED:
            if length == 2:
                sack_perm = True
        elif kind == OPT_SACK:
            if length >= 10 and not (length - 2) % 8:
                sack = tuple(_II.unpack_from(opts, j) for j in range(i + 2, i + length, 8))
        elif kind == OPT_TIMESTAMP:
            if length == 10:
                ts = _II.unpack_from(opts, i + 2)
        else:
            unknown.append((kind, bytes(opts[i + 2 : i + length])))
        i += length
    return mss, wscale, sack_perm, sack, ts, tuple(unknown)


class TCPRepr(NamedTuple):
    """The meaning of a TCP segment: ports, numbers, flags, options and payload.

    ``window`` is the raw 16-bit field (unscaled). ``timestamp`` is ``(TSval, TSecr)``.
    ``sack_blocks`` are ``(left, right)`` pairs. ``unknown_options`` keeps options we do
    not interpret as ``(kind, data)`` so they survive a parse/emit round trip (the Fast
    Open cookie, kind 34, among them). ``ecn`` is not in the TCP header: it is the IP
    header's ECN codepoint (RFC 3168: 0 Not-ECT, 2 ECT(0), 3 CE) the segment arrived
    with (set by the IP layer's caller; 0 from ``parse``) or is to be sent with.
    """

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: Buffer = b""
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamp: tuple[int, int] | None = None
    urgent: int = 0
    unknown_options: tuple[tuple[int, bytes], ...] = ()
    ecn: int = 0

    @classmethod
    def parse(
        cls,
        data: Buffer,
        src: bytes | None = None,
        dst: bytes | None = None,
    ) -> TCPRepr:
        """Parse a segment; with ``src``/``dst`` (packed addresses) verify the checksum.

        The payload is a view into ``data`` (no copy).
        """
        buf = data if isinstance(data, memoryview) else memoryview(data)
        n = len(buf)
        if n < HEADER_LEN:
            raise TCPParseError("length", f"{n} bytes is shorter than the 20-byte header")
        if n >= 32 and buf[12] == 0x80:
            # The usual segment after the handshake (RFC 7323 appendix A): timestamps as
            # the only option, read with the header in one unpack.
            (sport, dport, seq, ack, off, flags, window, _csum, urgent, opt, tsv, tse) = (
                _HDR_TS.unpack_from(buf)
            )
            hl = 32
            ts_only = opt == _NOP_NOP_TS_WORD
        else:
            sport, dport, seq, ack, off, flags, window, _csum, urgent = _HDR.unpack_from(buf)
            hl = (off >> 4) * 4
            ts_only = False
            tsv = tse = 0
        if hl < HEADER_LEN:
            raise TCPParseError("data_offset", f"{hl} bytes is below the minimum 20")
        if hl > n:
            raise TCPParseError("data_offset", f"{hl} bytes exceeds the {n}-byte segment")
        if src is not None and dst is not None:
            if len(src) == 4 == len(dst):
                # The sum with a correct checksum is a non-zero multiple of 0xFFFF. Below
                # a segment's size the bytes are one integer (an odd length padded with
                # a zero byte), reduced once with the pseudo-header (residue() would
                # reduce it first: a call and a division more per segment).
                if n < FOLD_FROM:
                    v = int.from_bytes(buf, "big") << 8 if n & 1 else int.from_bytes(buf, "big")
                else:
                    v = residue(buf)
                v += int.from_bytes(src, "big") + int.from_bytes(dst, "big") + PROTOCOL + n
                if v % 0xFFFF:
                    raise TCPChecksumError()
            elif checksum_v((buf,), pseudo_sum(src, dst, PROTOCOL, n)) != 0:
                raise TCPChecksumError()
        payload = buf[hl:]
        if ts_only or hl == HEADER_LEN:
            # No options, or the usual ones of every segment after the handshake: the
            # tuple built directly, without the general option walk.
            tsopt = (tsv, tse) if ts_only else None
            return plain_segment(sport, dport, seq, ack, flags, window, payload, (), tsopt, urgent)
        opts = buf[HEADER_LEN:hl]
        if hl == 40 and (got := _syn_options(opts)) is not None:
            # Every connection's SYN: built directly, as plain_segment builds the rest.
            smss, sws, tsv, tse = got
            return _tuple_new(cls, (sport, dport, seq, ack, flags, window, payload, smss, sws,
                                    True, (), (tsv, tse), urgent, (), 0))  # fmt: skip
        omss, ows, sp, sack, ts, unknown = _parse_options(opts)
        return cls(
            sport,
            dport,
            seq,
            ack,
            flags,
            window,
            payload,
            omss,
            ows,
            sp,
            sack,
            ts,
            urgent,
            unknown,
        )

    def options_len(self) -> int:
        n = 0
        if self.mss is not None:
            n += 4
        if self.wscale is not None:
            n += 4
        if self.sack_permitted and self.timestamp is not None:
            n += 12
        else:
            if self.sack_permitted:
                n += 4
            if self.timestamp is not None:
                n += 12
        if self.sack_blocks:
            n += 4 + 8 * len(self.sack_blocks)
        for _kind, data in self.unknown_options:
            n += 2 + len(data)
        return (n + 3) & ~3

    def header_len(self) -> int:
        return HEADER_LEN + self.options_len()

    def buffer_len(self) -> int:
        """Bytes ``emit`` writes; raises ``ValueError`` if the options cannot fit."""
        olen = self.options_len()
        if olen > MAX_OPTIONS_LEN:
            raise ValueError(f"options: {olen} bytes exceed the 40-byte limit")
        return HEADER_LEN + olen + len(self.payload)

    @property
    def seg_len(self) -> int:
        """Sequence space used: payload plus one for each of SYN and FIN."""
        f = self.flags
        return len(self.payload) + (f & SYN) // SYN + (f & FIN)

    def _emit_options(self, buf: memoryview, i: int) -> int:
        if self.mss is not None:
            _MSS.pack_into(buf, i, OPT_MSS, 4, self.mss)
            i += 4
        if self.wscale is not None:
            buf[i : i + 4] = bytes((OPT_NOP, OPT_WSCALE, 3, self.wscale))
            i += 4
        ts = self.timestamp
        if self.sack_permitted and ts is not None:
            _TS.pack_into(buf, i, OPT_SACK_PERMITTED, 2, OPT_TIMESTAMP, 10, ts[0], ts[1])
            i += 12
        else:
            if self.sack_permitted:
                buf[i : i + 4] = bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
                i += 4
            if ts is not None:
                _TS.pack_into(buf, i, OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10, ts[0], ts[1])
                i += 12
        if self.sack_blocks:
            blocks = self.sack_blocks
            buf[i : i + 4] = bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks)))
            i += 4
            for left, right in blocks:
                _II.pack_into(buf, i, left, right)
                i += 8
        for kind, data in self.unknown_options:
            buf[i] = kind
            buf[i + 1] = 2 + len(data)
            buf[i + 2 : i + 2 + len(data)] = data
            i += 2 + len(data)
        while i & 3:
            buf[i] = OPT_EOL
            i += 1
        return i

    def emit(
        self,
        buffer: Buffer,
        src: bytes | None = None,
        dst: bytes | None = None,
        *,
        partial_checksum: bool = False,
    ) -> None:
        """Write the segment into ``buffer`` (exactly ``buffer_len()`` bytes).

        With ``src``/``dst`` the checksum is filled (or only the pseudo-header sum with
        ``partial_checksum``, for checksum offload); without them it is left zero.
        """
        buf = buffer if isinstance(buffer, memoryview) else memoryview(buffer)
        hl = HEADER_LEN + self.options_len()
        _HDR.pack_into(
            buf,
            0,
            self.src_port,
            self.dst_port,
            self.seq,
            self.ack,
            (hl // 4) << 4,
            self.flags,
            self.window,
            0,
            self.urgent,
        )
        if hl > HEADER_LEN:
            self._emit_options(buf, HEADER_LEN)
        end = hl + len(self.payload)
        if end > hl:
            buf[hl:end] = self.payload
        if src is not None and dst is not None:
            if partial_checksum:
                TCPPacket(buf[:end]).fill_partial_checksum(src, dst)
            elif len(src) == 4 == len(dst):
                _fill_checksum_v4(buf[:end], src, dst)
            else:
                TCPPacket(buf[:end]).fill_checksum(src, dst)

    def to_bytes(self, src: bytes | None = None, dst: bytes | None = None) -> bytearray:
        """Convenience: a new buffer holding the emitted segment."""
        out = bytearray(self.buffer_len())
        self.emit(out, src, dst)
        return out

    def __repr__(self) -> str:
        parts = [
            f"{self.src_port}->{self.dst_port}",
            flags_str(self.flags),
            f"seq={self.seq}",
            f"ack={self.ack}",
            f"win={self.window}",
            f"len={len(self.payload)}",
        ]
        if self.mss is not None:
            parts.append(f"mss={self.mss}")
        if self.wscale is not None:
            parts.append(f"ws={self.wscale}")
        if self.sack_permitted:
            parts.append("sackOK")
        if self.sack_blocks:
            parts.append(f"sack={list(self.sack_blocks)}")
        if self.timestamp is not None:
            parts.append(f"ts={self.timestamp}")
        return "TCPRepr(" + " ".join(parts) + ")"


# --- the positional layout of TCPRepr, for the per-segment paths --------------------------
# ``TCPRepr(...)`` runs the NamedTuple's generated ``__new__`` (Python code, about half a
# microsecond) and each field read is a lookup; the per-segment paths build and take
# apart the tuple by position instead, through these two functions only.


def plain_segment(
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    payload: Buffer,
    sack_blocks: tuple[tuple[int, int], ...],
    timestamp: tuple[int, int] | None,
    urgent: int = 0,
    ecn: int = 0,
) -> TCPRepr:
    """A segment without the handshake's options (MSS, window scale, SACK-permitted) or
    unknown ones: what every segment after the handshake is. Built without ``__new__``."""
    return _tuple_new(
        TCPRepr,
        (
            src_port,
            dst_port,
            seq,
            ack,
            flags,
            window,
            payload,
            None,
            None,
            False,
            sack_blocks,
            timestamp,
            urgent,
            (),
            ecn,
        ),
    )


def handshake_segment(
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    mss: int | None,
    wscale: int | None,
    sack_permitted: bool,
    timestamp: tuple[int, int] | None,
) -> TCPRepr:
    """A SYN or SYN-ACK without data, SACK blocks or other options: one per connection,
    built without ``__new__`` (with keywords it cost as much as the rest of the SYN-ACK)."""
    return _tuple_new(
        TCPRepr,
        (src_port, dst_port, seq, ack, flags, window, b"", mss, wscale, sack_permitted, (),
         timestamp, 0, (), 0),
    )  # fmt: skip


def cut_flags(flags: int) -> tuple[int, int, int]:
    """The flags of the first, the middle and the last of the segments that one segment
    with ``flags`` is cut into, as TCP segmentation offload cuts it (Linux's GSO does
    the same): PSH and FIN go on the last only (the data they mark ends there), CWR on
    the first only (RFC 3168 6.1.2: once per window reduction)."""
    first = flags & ~(PSH | FIN)
    return first, first & ~CWR, flags & ~CWR


def cut_segment(seg: TCPRepr, size: int) -> list[TCPRepr]:
    """``seg`` as segments of at most ``size`` payload bytes each (sequence numbers
    following on, flags by :func:`cut_flags`, every other field the same): what a
    device with TCP segmentation offload sends for it."""
    payload = seg.payload
    n = len(payload)
    if n <= size:
        return [seg]
    view = memoryview(payload)
    first, middle, last = cut_flags(seg.flags)
    out = []
    for off in range(0, n, size):
        flags = first if not off else last if off + size >= n else middle
        out.append(
            seg._replace(
                seq=(seg.seq + off) & 0xFFFFFFFF, flags=flags, payload=view[off : off + size]
            )
        )
    return out


# ``(seq, ack, flags, window, payload, timestamp)`` of a data segment with no option but
# timestamps, no urgent data and no ECN mark (Connection.data_now gives them and
# TcpSender.data_frame frames them: no TCPRepr between the two).
DataFields = tuple[int, int, int, int, Buffer, tuple[int, int] | None]


def plain_fields(
    seg: TCPRepr,
) -> tuple[int, int, int, int, Buffer, tuple[int, int] | None, int] | None:
    """``(seq, ack, flags, window, payload, timestamp, ecn)`` of a segment whose only
    option is timestamps and that has no urgent data (what a prebuilt header covers);
    else None."""
    _sp, _dp, seq, ack, flags, window, payload, mss, ws, sackp, sack, ts, urg, unk, ecn = seg
    if urg or sack or mss is not None or ws is not None or sackp or unk:
        return None
    return seq, ack, flags, window, payload, ts, ecn
