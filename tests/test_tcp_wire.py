"""The TCP header view and value type: fixed bytes, scapy as independent decoder, round trips."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from miragekit.wire._checksum import checksum_v
from miragekit.wire._checksum import pseudo_sum as pseudo_header_sum
from miragekit.wire.tcp import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    TCPChecksumError,
    TCPPacket,
    TCPParseError,
    TCPRepr,
)

SRC4 = ipaddress.IPv4Address("192.168.1.1").packed
DST4 = ipaddress.IPv4Address("192.168.1.2").packed
SRC6 = ipaddress.IPv6Address("fe80::1").packed
DST6 = ipaddress.IPv6Address("fe80::2").packed

# A SYN with MSS 1460, SACK permitted, timestamps and window scale 7, as Linux sends it,
# checksummed over 192.168.1.1 -> 192.168.1.2.
SYN_BYTES = bytes.fromhex(
    "c35000500000000100000000a002faf000000000020405b40402080a0000000a0000000001030307"
)


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    return checksum_v((data,), initial)


def _syn_with_checksum() -> bytes:
    buf = bytearray(SYN_BYTES)
    TCPPacket(buf).fill_checksum(SRC4, DST4)
    return bytes(buf)


def test_view_fields() -> None:
    p = TCPPacket.new_checked(_syn_with_checksum())
    assert (p.src_port, p.dst_port, p.seq, p.ack) == (50000, 80, 1, 0)
    assert p.header_len == 40 and p.flags == SYN and p.window == 64240 and p.urgent == 0
    assert p.verify_checksum(SRC4, DST4)
    assert len(p.options) == 20 and len(p.payload) == 0


def test_deconstruct_linux_style_syn() -> None:
    r = TCPRepr.parse(_syn_with_checksum(), SRC4, DST4)
    assert r == TCPRepr(
        50000, 80, 1, 0, SYN, 64240, b"", mss=1460, wscale=7, sack_permitted=True, timestamp=(10, 0)
    )


def test_construct_matches_scapy_checksum_v4() -> None:
    r = TCPRepr(1234, 80, 0xFFFFFFF0, 0x10, ACK | PSH, 512, b"hello world", timestamp=(7, 9))
    raw = r.to_bytes(SRC4, DST4)
    ip = IP(bytes(IP(src="192.168.1.1", dst="192.168.1.2", proto=6) / TCP(bytes(raw))))
    ref = (
        IP(src="192.168.1.1", dst="192.168.1.2")
        / TCP(
            sport=1234,
            dport=80,
            seq=0xFFFFFFF0,
            ack=0x10,
            flags="PA",
            window=512,
            options=[("NOP", None), ("NOP", None), ("Timestamp", (7, 9))],
        )
        / b"hello world"
    )
    assert ip[TCP].chksum == IP(bytes(ref))[TCP].chksum
    assert bytes(raw) == bytes(IP(bytes(ref))[TCP])


def test_checksum_v6_matches_scapy() -> None:
    r = TCPRepr(1, 2, 3, 4, ACK, 100, b"odd")
    raw = r.to_bytes(SRC6, DST6)
    ref = (
        IPv6(src="fe80::1", dst="fe80::2")
        / TCP(sport=1, dport=2, seq=3, ack=4, flags="A", window=100)
        / b"odd"
    )
    assert bytes(raw) == bytes(IPv6(bytes(ref))[TCP])
    assert TCPRepr.parse(raw, SRC6, DST6) == r


def test_scapy_decodes_all_our_options() -> None:
    r = TCPRepr(
        5,
        6,
        7,
        8,
        SYN | ACK,
        9,
        b"",
        mss=1400,
        wscale=14,
        sack_permitted=True,
        timestamp=(1, 2),
        sack_blocks=((10, 20),),
        unknown_options=((254, b"\x01\x02"),),
    )
    assert r.buffer_len() <= 60
    t = TCP(bytes(r.to_bytes()))
    opts = dict((k, v) for k, v in t.options if k != "NOP")
    assert opts["MSS"] == 1400 and opts["WScale"] == 14 and opts["Timestamp"] == (1, 2)
    assert opts["SAck"] == (10, 20) and "SAckOK" in opts


def test_parse_scapy_generated() -> None:
    pkt = (
        IP(src="192.168.1.1", dst="192.168.1.2")
        / TCP(
            sport=4000,
            dport=5201,
            seq=123,
            ack=456,
            flags="FA",
            window=1000,
            options=[("SAck", (100, 200)), ("NOP", None), ("WScale", 3), ("EOL", None)],
        )
        / b"xyz"
    )
    raw = bytes(IP(bytes(pkt))[TCP])
    r = TCPRepr.parse(raw, SRC4, DST4)
    assert (r.seq, r.ack, r.flags, r.window) == (123, 456, FIN | ACK, 1000)
    assert r.sack_blocks == ((100, 200),) and r.wscale == 3 and bytes(r.payload) == b"xyz"


def test_bad_checksum_rejected() -> None:
    raw = bytearray(TCPRepr(1, 2, 3, 4, ACK, 5, b"data").to_bytes(SRC4, DST4))
    raw[-1] ^= 0x40
    with pytest.raises(TCPChecksumError) as e:
        TCPRepr.parse(raw, SRC4, DST4)
    assert e.value.field == "checksum"
    assert TCPRepr.parse(raw).payload == b"dat!"  # without addresses: not verified


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"\x00" * 19, "length"),
        (bytes(12) + b"\x40" + bytes(7), "data_offset"),
        (bytes(12) + b"\x60" + bytes(7), "data_offset"),
    ],
)
def test_impossible_input_names_field(raw: bytes, field: str) -> None:
    with pytest.raises(TCPParseError) as e:
        TCPRepr.parse(raw)
    assert e.value.field == field
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "opts",
    [
        b"\x02\x03\x05\xb4",  # MSS of length 3
        b"\x03\x01\x00\x00",  # length 1
        b"\x01\x01\x01\x08",  # no length byte
        b"\x05\x06\x00\x00",  # longer than the options
        b"\x05\x08" + bytes(6),  # SACK of no whole block
        b"\x08\x0c" + bytes(10),  # timestamps of length 12
        b"\x04\x03\x00\x00",  # SACK-permitted of length 3
        b"\x03\x04\x00\x00",  # window scale of length 4
        b"\x02\x00\x00\x00",  # length 0
    ],
)
def test_malformed_options_are_ignored_not_the_segment(opts: bytes) -> None:
    """As Linux: a bad option is skipped (or ends the walk), the segment stays."""
    raw = bytes(12) + bytes(((20 + len(opts)) << 2,)) + bytes(7) + opts + b"data"
    r = TCPRepr.parse(raw)
    assert r.payload == b"data"
    assert (r.mss, r.wscale, r.sack_permitted, r.sack_blocks, r.timestamp) == (
        None,
        None,
        False,
        (),
        None,
    )


def test_options_after_a_malformed_one_still_count() -> None:
    opts = b"\x03\x04\x00\x00" + b"\x02\x04\x05\xb4"  # bad window scale, then MSS
    r = TCPRepr.parse(bytes(12) + b"\x70" + bytes(7) + opts)
    assert r.mss == 1460 and r.wscale is None


def test_unknown_option_kept_eol_stops_and_wscale_clamped() -> None:
    raw = bytes(12) + b"\x70" + bytes(7) + b"\x1e\x04ab\x03\x03\x0f\x00\x00\xff\xff\xff"
    r = TCPRepr.parse(raw)
    assert r.unknown_options == ((30, b"ab"),) and r.wscale == 14


def test_options_too_long() -> None:
    r = TCPRepr(1, 2, 3, 4, ACK, 5, sack_blocks=((1, 2),) * 4, timestamp=(1, 1))
    with pytest.raises(ValueError, match="options"):
        r.buffer_len()


def test_internet_checksum_known_values() -> None:
    # RFC 1071 example words 0001 f203 f4f5 f6f7 sum to ddf2 -> checksum 220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0x0000
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00")
    assert (
        pseudo_header_sum(SRC4, DST4, 6, 20) % 0xFFFF
        == (0xC0A8 + 0x0101 + 0xC0A8 + 0x0102 + 6 + 20) % 0xFFFF
    )
    with pytest.raises(ValueError, match="src/dst"):
        pseudo_header_sum(SRC4, DST6, 6, 20)


def _slow_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@given(st.binary(max_size=3000))
def test_checksum_matches_reference_loop(data: bytes) -> None:
    assert internet_checksum(data) == _slow_checksum(data)


u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
reprs = st.builds(
    TCPRepr,
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 255),
    window=u16,
    payload=st.binary(max_size=200),
    mss=st.none() | u16,
    wscale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=2).map(tuple),
    timestamp=st.none() | st.tuples(u32, u32),
    urgent=u16,
    # Not 29 (TCP-AO): scapy's own parser of it fails on a short value.
    unknown_options=st.lists(
        st.tuples(st.integers(9, 253).filter(lambda k: k != 29), st.binary(max_size=3)),
        max_size=1,
    ).map(tuple),
    ecn=st.just(0),  # the IP header's codepoint: not in the TCP bytes, 0 from parse
)


@settings(max_examples=300)
@given(reprs, st.booleans())
def test_round_trip(r: TCPRepr, v6: bool) -> None:
    assume(r.options_len() <= 40)
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    raw = r.to_bytes(src, dst)
    assert len(raw) == r.buffer_len()
    back = TCPRepr.parse(raw, src, dst)
    assert back == r
    # scapy agrees on the fixed fields and the checksum.
    t = TCP(bytes(raw))
    assert (t.sport, t.dport, t.seq, t.ack, int(t.flags), t.window) == (
        r.src_port,
        r.dst_port,
        r.seq,
        r.ack,
        r.flags,
        r.window,
    )


def test_view_setters_and_partial_checksum() -> None:
    buf = bytearray(20)
    p = TCPPacket(buf)
    p.src_port, p.dst_port, p.seq, p.ack = 1, 2, 3, 4
    p.header_len, p.flags, p.window, p.urgent = 20, RST | ACK, 7, 9
    r = TCPRepr.parse(buf)
    assert r == TCPRepr(1, 2, 3, 4, RST | ACK, 7, b"", urgent=9)
    p.fill_partial_checksum(SRC4, DST4)
    partial = p.checksum
    # Offload completes it by summing the segment starting from the partial sum.
    p.checksum = 0
    full = internet_checksum(buf, partial)
    p.checksum = full
    assert p.verify_checksum(SRC4, DST4)
    assert r.seg_len == 0 and TCPRepr(1, 2, 3, 4, SYN | FIN, 0, b"ab").seg_len == 4


def test_nop_nop_timestamp_fast_path_matches_the_general_parser() -> None:
    # NOP NOP TS (the options of every segment after a Linux handshake) take a short cut;
    # TS NOP NOP (same length) and NOP NOP TS + SACK take the general path: all agree.
    ts = b"\x08\x0a" + (7).to_bytes(4, "big") + (9).to_bytes(4, "big")
    for opts in (b"\x01\x01" + ts, ts + b"\x01\x01", b"\x01\x01" + ts + b"\x01\x01\x04\x02"):
        hdr = bytearray(20)
        hdr[0:4] = b"\x00\x50\x00\x51"
        hdr[12] = (20 + len(opts)) // 4 << 4
        hdr[13] = ACK
        raw = bytes(hdr) + opts + b"data"
        r = TCPRepr.parse(raw)
        assert r.timestamp == (7, 9)
        assert (r.mss, r.wscale, r.sack_blocks, r.unknown_options) == (None, None, (), ())
        assert r.sack_permitted == (len(opts) == 16)
        assert bytes(r.payload) == b"data" and r.flags == ACK and r.dst_port == 0x51


_SYN_LAYOUTS = (
    # Linux's order: MSS; SACK-permitted, TS; NOP, WS.
    lambda mss, ws, tsv, tse: (
        b"\x02\x04" + mss.to_bytes(2, "big") + b"\x04\x02\x08\x0a"
        + tsv.to_bytes(4, "big") + tse.to_bytes(4, "big") + b"\x01\x03\x03" + bytes((ws,))
    ),
    # Ours (TCPRepr.emit): MSS; NOP, WS; SACK-permitted, TS.
    lambda mss, ws, tsv, tse: (
        b"\x02\x04" + mss.to_bytes(2, "big") + b"\x01\x03\x03" + bytes((ws,))
        + b"\x04\x02\x08\x0a" + tsv.to_bytes(4, "big") + tse.to_bytes(4, "big")
    ),
)  # fmt: skip


@settings(max_examples=400)
@given(
    st.sampled_from(_SYN_LAYOUTS),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.lists(st.tuples(st.integers(0, 19), st.integers(0, 255)), max_size=2),
    st.sampled_from([SYN, SYN | ACK, SYN | 0xC0]),
)
def test_syn_options_short_cut_matches_the_general_parser(
    layout: object,
    mss: int,
    ws: int,
    tsv: int,
    tse: int,
    edits: list[tuple[int, int]],
    flags: int,
) -> None:
    # A SYN's usual 20 bytes of options in either usual order are read in one unpack
    # (wire.tcp._syn_options); with any bytes changed they may not be: either way the
    # segment is the one the general option walk gives.
    from miragekit.wire.tcp import _parse_options, _syn_options

    opts = bytearray(layout(mss, ws, tsv, tse))  # type: ignore[operator]
    assert _syn_options(memoryview(opts)) == (mss, min(ws, 14), tsv, tse)
    for i, b in edits:
        opts[i] = b
    hdr = bytearray(20)
    hdr[0:4] = b"\x00\x50\x00\x51"
    hdr[4:8] = (123456).to_bytes(4, "big")
    hdr[12] = 10 << 4
    hdr[13] = flags
    hdr[14:16] = (64240).to_bytes(2, "big")
    r = TCPRepr.parse(bytes(hdr) + opts + b"xy")
    m, w, sp, sack, ts, unk = _parse_options(memoryview(bytes(opts)))
    want = TCPRepr(0x50, 0x51, 123456, 0, flags, 64240, b"xy", m, w, sp, sack, ts, 0, unk)
    assert r == want
    assert type(r) is TCPRepr and r.ecn == 0 and type(r.timestamp) in (tuple, type(None))
