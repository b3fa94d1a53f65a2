"""DHCP messages: fixed bytes, scapy as an independent encoder/decoder, malformed options,
overload, and hypothesis round trips."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from miragekit.macaddr import MacAddr
from miragekit.wire import DhcpMessageType, DhcpOp, DhcpPacket, DhcpRepr, WireError
from miragekit.wire.dhcp import MAGIC_COOKIE, MIN_LEN, OPTIONS, parse_options

A = ipaddress.IPv4Address
MAC = MacAddr("02:00:00:00:00:02")


def scapy_offer() -> bytes:
    pkt = BOOTP(
        op=2,
        xid=0xDEADBEEF,
        yiaddr="10.0.0.50",
        siaddr="10.0.0.1",
        chaddr=MAC.packed + bytes(10),
        flags=0x8000,
    ) / DHCP(
        options=[
            ("message-type", "offer"),
            ("server_id", "10.0.0.1"),
            ("lease_time", 3600),
            ("renewal_time", 1800),
            ("rebinding_time", 3150),
            ("subnet_mask", "255.255.255.0"),
            ("router", "10.0.0.1", "10.0.0.254"),
            ("name_server", "10.0.0.53"),
            ("hostname", "box"),
            ("interface-mtu", 1400),
            (200, b"\x01\x02"),
            "end",
        ]
    )
    return bytes(pkt)


def test_parse_what_scapy_built() -> None:
    r = DhcpRepr.from_bytes(scapy_offer())
    assert r.op is DhcpOp.REPLY and r.message_type is DhcpMessageType.OFFER
    assert r.xid == 0xDEADBEEF and r.chaddr == MAC and r.broadcast
    assert r.yiaddr == A("10.0.0.50") and r.siaddr == A("10.0.0.1")
    assert r.server_id == A("10.0.0.1") and r.lease_time == 3600
    assert (r.renewal_time, r.rebinding_time) == (1800, 3150)
    assert r.subnet_mask == A("255.255.255.0")
    assert r.routers == (A("10.0.0.1"), A("10.0.0.254"))
    assert r.dns_servers == (A("10.0.0.53"),)
    assert r.host_name == "box" and r.mtu == 1400
    assert r.other == ((200, b"\x01\x02"),)  # unknown option kept


def test_emit_decoded_by_scapy() -> None:
    r = DhcpRepr(
        op=DhcpOp.REQUEST,
        xid=0x01020304,
        chaddr=MAC,
        message_type=DhcpMessageType.REQUEST,
        secs=3,
        requested_ip=A("10.0.0.50"),
        server_id=A("10.0.0.1"),
        parameter_request_list=(1, 3, 6, 26, 51, 58, 59),
        client_id=b"\x01" + MAC.packed,
        host_name="mirage",
    )
    raw = r.to_bytes()
    assert len(raw) == r.buffer_len() == MIN_LEN
    pkt = BOOTP(raw)
    assert pkt.op == 1 and pkt.xid == 0x01020304 and pkt.secs == 3
    assert pkt.chaddr[:6] == MAC.packed and pkt.flags == 0
    opts = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
    assert opts["message-type"] == (3,)
    assert opts["requested_addr"] == ("10.0.0.50",)
    assert opts["server_id"] == ("10.0.0.1",)
    assert opts["param_req_list"] == ([1, 3, 6, 26, 51, 58, 59],)
    assert opts["client_id"] == (b"\x01" + MAC.packed,)
    assert opts["hostname"] == (b"mirage",)
    assert DhcpRepr.from_bytes(raw) == r


def test_fixed_bytes_deconstruct() -> None:
    raw = bytearray(OPTIONS) + bytearray(b"\x35\x01\x05\x00\x00\xff")
    raw[0:4] = b"\x02\x01\x06\x00"
    raw[4:8] = b"\x00\x00\x00\x2a"
    raw[16:20] = bytes((192, 168, 1, 9))
    raw[28:34] = MAC.packed
    raw[236:240] = MAGIC_COOKIE
    p = DhcpPacket.checked(raw)
    assert (p.op, p.htype, p.hlen, p.xid) == (2, 1, 6, 42)
    assert p.yiaddr == A("192.168.1.9")
    r = DhcpRepr.parse(p)
    assert r.message_type is DhcpMessageType.ACK and r.lease_time is None


def _with_options(opts: bytes, *, file: bytes = b"", sname: bytes = b"") -> bytes:
    r = DhcpRepr(op=DhcpOp.REPLY, xid=1, chaddr=MAC)
    raw = bytearray(r.to_bytes())
    raw[44 : 44 + len(sname)] = sname
    raw[108 : 108 + len(file)] = file
    raw[OPTIONS:] = opts
    return bytes(raw)


@pytest.mark.parametrize(
    ("opts", "field"),
    [
        (b"\x35", "options"),  # no length byte
        (b"\x35\x01", "options"),  # data missing
        (b"\x03\x08\x0a\x00\x00\x01", "options"),  # overflows the field
        (b"\x35\x02\x05\x05\xff", "message_type"),
        (b"\x01\x03\xff\xff\xff\xff", "subnet_mask"),
        (b"\x03\x05\x0a\x00\x00\x01\x00\xff", "routers"),
        (b"\x33\x02\x00\x01\xff", "lease_time"),
        (b"\x1a\x01\x05\xff", "mtu"),
        (b"\x34\x01\x04\xff", "overload"),
    ],
)
def test_malformed_options_name_the_field(opts: bytes, field: str) -> None:
    with pytest.raises(WireError) as e:
        DhcpRepr.from_bytes(_with_options(opts))
    assert e.value.field == field


def test_impossible_lengths_and_cookie() -> None:
    with pytest.raises(WireError, match="length"):
        DhcpPacket.checked(bytes(239))
    raw = bytearray(_with_options(b"\xff"))
    raw[236] = 0
    with pytest.raises(WireError) as e:
        DhcpPacket.checked(raw)
    assert e.value.field == "magic"
    raw = bytearray(_with_options(b"\xff"))
    raw[2] = 16
    with pytest.raises(WireError) as e:
        DhcpRepr.from_bytes(raw)
    assert e.value.field == "htype"
    raw[2] = 6
    raw[0] = 3
    with pytest.raises(WireError) as e:
        DhcpRepr.from_bytes(raw)
    assert e.value.field == "op"


def test_pad_end_and_missing_end() -> None:
    assert parse_options(b"\x00\x00\x35\x01\x02\xff\x03\x01", "options") == [(53, b"\x02")]
    assert parse_options(b"\x35\x01\x02\x00", "options") == [(53, b"\x02")]  # no end: ok


def test_overload_file_then_sname() -> None:
    file = b"\x33\x04\x00\x00\x0e\x10\xff"  # lease time 3600
    sname = b"\x03\x04\x0a\x00\x00\x01\xff"  # router
    raw = _with_options(b"\x35\x01\x05\x34\x01\x03\xff", file=file, sname=sname)
    r = DhcpRepr.from_bytes(raw)
    assert r.message_type is DhcpMessageType.ACK and r.lease_time == 3600
    assert r.routers == (A("10.0.0.1"),) and r.sname == b"" and r.file == b""
    # Not overloaded: the same bytes are just names.
    r = DhcpRepr.from_bytes(_with_options(b"\x35\x01\x05\xff", file=b"boot.img"))
    assert r.file == b"boot.img" and r.lease_time is None


def test_overload_truncated_in_file_names_file() -> None:
    with pytest.raises(WireError) as e:
        DhcpRepr.from_bytes(_with_options(b"\x34\x01\x01\xff", file=b"\x00" * 126 + b"\x03\x04"))
    assert e.value.field == "file"
    with pytest.raises(WireError) as e:
        DhcpRepr.from_bytes(_with_options(b"\x34\x01\x02\xff", sname=b"\x34\x01\x01"))
    assert e.value.field == "sname"


def test_repeated_options_concatenate_and_long_values_split() -> None:
    raw = _with_options(b"\x06\x04\x01\x01\x01\x01\x06\x04\x02\x02\x02\x02\xff")
    assert DhcpRepr.from_bytes(raw).dns_servers == (A("1.1.1.1"), A("2.2.2.2"))
    r = DhcpRepr(op=DhcpOp.REPLY, xid=1, chaddr=MAC, other=((250, bytes(range(256)) * 2),))
    back = DhcpRepr.from_bytes(r.to_bytes())
    assert back.other == ((250, bytes(range(256)) * 2),)


addrs = st.integers(0, 2**32 - 1).map(A)
maybe_addr = st.none() | addrs
u32 = st.none() | st.integers(0, 2**32 - 1)


@given(
    op=st.sampled_from(DhcpOp),
    xid=st.integers(0, 2**32 - 1),
    mac=st.binary(min_size=6, max_size=6).map(MacAddr),
    mt=st.none() | st.sampled_from(DhcpMessageType),
    secs=st.integers(0, 0xFFFF),
    bcast=st.booleans(),
    ci=addrs,
    yi=addrs,
    mask=maybe_addr,
    routers=st.lists(addrs, max_size=70).map(tuple),
    dns=st.lists(addrs, max_size=3).map(tuple),
    host=st.none() | st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=40),
    mtu=st.none() | st.integers(0, 0xFFFF),
    req=maybe_addr,
    lease=u32,
    sid=maybe_addr,
    prl=st.lists(st.integers(1, 254), min_size=1, max_size=20).map(tuple) | st.just(()),
    t1=u32,
    t2=u32,
    cid=st.none() | st.binary(min_size=1, max_size=300),
    other=st.lists(
        st.tuples(st.sampled_from([2, 15, 43, 60, 81, 121, 200, 254]), st.binary(max_size=20)),
        max_size=4,
    ).map(tuple),
)
def test_round_trip(
    op: DhcpOp,
    xid: int,
    mac: MacAddr,
    mt: DhcpMessageType | None,
    secs: int,
    bcast: bool,
    ci: A,
    yi: A,
    mask: A | None,
    routers: tuple[A, ...],
    dns: tuple[A, ...],
    host: str | None,
    mtu: int | None,
    req: A | None,
    lease: int | None,
    sid: A | None,
    prl: tuple[int, ...],
    t1: int | None,
    t2: int | None,
    cid: bytes | None,
    other: tuple[tuple[int, bytes], ...],
) -> None:
    # Repeated codes merge into one option (RFC 3396), so keep the codes unique here.
    seen: set[int] = set()
    other = tuple(o for o in other if not (o[0] in seen or seen.add(o[0])))  # type: ignore[func-returns-value]
    r = DhcpRepr(
        op=op,
        xid=xid,
        chaddr=mac,
        message_type=mt,
        secs=secs,
        broadcast=bcast,
        ciaddr=ci,
        yiaddr=yi,
        subnet_mask=mask,
        routers=routers,
        dns_servers=dns,
        host_name=host,
        mtu=mtu,
        requested_ip=req,
        lease_time=lease,
        server_id=sid,
        parameter_request_list=prl,
        renewal_time=t1,
        rebinding_time=t2,
        client_id=cid,
        other=other,
    )
    raw = r.to_bytes()
    assert len(raw) == r.buffer_len()
    assert DhcpRepr.from_bytes(raw) == r
    assert BOOTP(raw).xid == xid  # scapy reads it as well


@given(st.binary(min_size=0, max_size=400))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    raw = _with_options(b"")[:OPTIONS] + data
    with contextlib.suppress(WireError):
        DhcpRepr.from_bytes(raw)
