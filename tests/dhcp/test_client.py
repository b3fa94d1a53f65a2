"""The DHCP client state machine on a manual clock: every transition, the retransmission
schedule, renewing, rebinding, expiry, NAK, DECLINE, RELEASE, and hostile replies."""

from __future__ import annotations

import ipaddress
import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miragekit.dhcp import (
    ArpProbe,
    Bound,
    Declined,
    DhcpClient,
    DhcpClientConfig,
    Expired,
    Nak,
    Released,
    Renewed,
    State,
    Transmit,
)
from miragekit.macaddr import MacAddr
from miragekit.wire.dhcp import DhcpMessageType, DhcpOp, DhcpRepr

A = ipaddress.IPv4Address
MT = DhcpMessageType
MAC = MacAddr("02:00:00:00:00:02")
OTHER_MAC = MacAddr("02:00:00:00:00:99")
SERVER = A("10.0.0.1")
SERVER2 = A("10.0.0.254")
BCAST = A("255.255.255.255")
OFFERED = A("10.0.0.50")


def make(seed: int = 7, **cfg: Any) -> DhcpClient:
    cfg.setdefault("arp_probes", 0)
    return DhcpClient(MAC, rng=random.Random(seed), config=DhcpClientConfig(**cfg))


def reply(
    req: DhcpRepr,
    mt: DhcpMessageType,
    *,
    yiaddr: A = OFFERED,
    server: A | None = SERVER,
    lease: int | None = 3600,
    **kw: Any,
) -> bytes:
    return DhcpRepr(
        op=DhcpOp.REPLY,
        xid=req.xid,
        chaddr=req.chaddr,
        message_type=mt,
        yiaddr=yiaddr,
        server_id=server,
        lease_time=lease,
        subnet_mask=A("255.255.255.0"),
        routers=(SERVER,),
        dns_servers=(A("10.0.0.53"),),
        mtu=1400,
        **kw,
    ).to_bytes()


def state(c: DhcpClient) -> State:
    """The client's state (a call, so that mypy does not keep a narrowed type)."""
    return c.state


def sent(c: DhcpClient, now: float) -> list[Transmit]:
    out = c.messages_to_send(now)
    assert all(isinstance(o, Transmit) for o in out), out
    return [o for o in out if isinstance(o, Transmit)]


def one(c: DhcpClient, now: float) -> Transmit:
    (t,) = sent(c, now)
    return t


def tick(c: DhcpClient) -> float:
    """Jump to the next deadline and fire it; return the time."""
    now = c.poll_at()
    assert now is not None
    c.handle_timer(now)
    return now


def bind(c: DhcpClient, *, lease: int = 3600, **kw: Any) -> Bound:
    c.start(0.0)
    c.handle_timer(0.0)
    discover = one(c, 0.0).message
    c.handle_message(0.1, reply(discover, MT.OFFER, lease=lease, **kw))
    request = one(c, 0.1).message
    c.handle_message(0.2, reply(request, MT.ACK, lease=lease, **kw))
    (ev,) = c.events()
    assert isinstance(ev, Bound)
    return ev


# --- the normal exchange --------------------------------------------------------------------


def test_discover_offer_request_ack_bound() -> None:
    c = make(host_name="mirage")
    c.start(0.0)
    assert state(c) is State.INIT and c.poll_at() == 0.0
    c.handle_timer(0.0)
    d = one(c, 0.0)
    assert state(c) is State.SELECTING and d.dst == BCAST
    m = d.message
    assert m.op is DhcpOp.REQUEST and m.message_type is MT.DISCOVER and m.chaddr == MAC
    assert m.ciaddr == A(0) and m.server_id is None and m.requested_ip is None
    assert m.client_id == b"\x01" + MAC.packed and m.host_name == "mirage"
    assert {1, 3, 6, 26, 51, 58, 59} <= set(m.parameter_request_list)
    assert DhcpRepr.from_bytes(d.payload) == m

    c.handle_message(1.0, reply(m, MT.OFFER))
    r = one(c, 1.0)
    assert state(c) is State.REQUESTING and r.dst == BCAST
    rm = r.message
    assert rm.message_type is MT.REQUEST and rm.xid == m.xid and rm.secs == 1
    assert rm.requested_ip == OFFERED and rm.server_id == SERVER and rm.ciaddr == A(0)

    c.handle_message(1.5, reply(rm, MT.ACK, renewal_time=1000, rebinding_time=2000))
    (ev,) = c.events()
    assert isinstance(ev, Bound) and state(c) is State.BOUND
    lease = ev.lease
    assert lease.address == OFFERED and lease.network == ipaddress.IPv4Network("10.0.0.0/24")
    assert lease.interface == ipaddress.IPv4Interface("10.0.0.50/24")
    assert lease.server_id == SERVER and lease.routers == (SERVER,)
    assert lease.dns_servers == (A("10.0.0.53"),) and lease.mtu == 1400
    # Times count from when the REQUEST was sent (1.0), not from the ACK.
    assert lease.obtained_at == 1.0 and lease.lease_time == 3600
    assert (lease.renew_at, lease.rebind_at, lease.expires_at) == (1001.0, 2001.0, 3601.0)
    assert c.poll_at() == 1001.0 and c.messages_to_send(1.5) == []
    assert c.counters.offers == 1 and c.counters.acks == 1


def test_default_t1_t2_and_invalid_ones() -> None:
    lease = bind(make(), lease=1000).lease
    assert (lease.renew_at, lease.rebind_at) == (500.1, 875.1)
    # T1 after T2 and T2 after the lease end are replaced by the defaults.
    lease = bind(make(), lease=1000, renewal_time=900, rebinding_time=2000).lease
    assert (lease.renew_at, lease.rebind_at) == (500.1, 875.1)


def test_infinite_lease_has_no_timers() -> None:
    c = make()
    lease = bind(c, lease=0xFFFFFFFF).lease
    assert lease.expires_at is None and lease.lease_time is None and c.poll_at() is None


# --- retransmission -------------------------------------------------------------------------


def discover_times(seed: int, n: int) -> list[float]:
    c = make(seed)
    c.start(0.0)
    times = []
    xids = set()
    for _ in range(n):
        now = tick(c)
        (t,) = sent(c, now)
        assert t.message.message_type is MT.DISCOVER
        assert t.message.secs == int(now)
        xids.add(t.message.xid)
        times.append(now)
    assert len(xids) == 1  # one transaction, retransmitted
    return times


def test_discover_backoff_4_8_16_32_64_capped_randomised() -> None:
    times = discover_times(7, 9)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, base in zip(gaps, [4, 8, 16, 32, 64, 64, 64, 64], strict=True):
        assert base - 1 <= gap <= base + 1, gaps
    assert len({round(g % 1, 6) for g in gaps}) > 1  # jittered, not exact
    assert discover_times(7, 9) == times  # seeded: the same run again
    assert discover_times(8, 9) != times


def test_request_retries_then_back_to_init() -> None:
    c = make(request_tries=4)
    c.start(0.0)
    c.handle_timer(0.0)
    d = one(c, 0.0).message
    c.handle_message(0.5, reply(d, MT.OFFER))
    first = one(c, 0.5).message
    times = [0.5]
    for _ in range(3):
        now = tick(c)
        t = one(c, now).message
        assert t.message_type is MT.REQUEST and t.xid == first.xid
        assert t.requested_ip == OFFERED and t.server_id == SERVER
        times.append(now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(base - 1 <= g <= base + 1 for g, base in zip(gaps, [4, 8, 16], strict=True))
    now = tick(c)  # the fourth REQUEST went unanswered: start over
    t = one(c, now).message
    assert t.message_type is MT.DISCOVER and t.xid != first.xid and t.secs == 0
    assert state(c) is State.SELECTING and c.counters.retransmissions == 3


# --- renewing, rebinding, expiry ------------------------------------------------------------


def test_renew_unicast_then_rebind_broadcast_then_expire() -> None:
    c = make(renew_min_retransmit=5.0)
    lease = bind(c, lease=100, renewal_time=50, rebinding_time=80).lease
    assert lease.obtained_at == 0.1
    # T1: RENEWING, unicast to the server, ciaddr set, no server id or requested address.
    now = tick(c)
    assert now == pytest.approx(50.1) and state(c) is State.RENEWING
    t = one(c, now)
    assert t.dst == SERVER
    m = t.message
    assert m.message_type is MT.REQUEST and m.ciaddr == OFFERED
    assert m.server_id is None and m.requested_ip is None and not m.broadcast
    renew_xid = m.xid
    # Retransmissions wait half the time left until T2, at least 5 s.
    times = [now]
    while True:
        now = tick(c)
        t = one(c, now)
        if state(c) is not State.RENEWING:
            break
        assert t.dst == SERVER and t.message.xid == renew_xid
        times.append(now)
    assert times == pytest.approx([50.1, 65.1, 72.6, 77.6])
    # T2: REBINDING, broadcast, ciaddr set, a new transaction.
    assert now == pytest.approx(80.1) and state(c) is State.REBINDING
    assert t.dst == BCAST and t.message.ciaddr == OFFERED and t.message.xid != renew_xid
    assert c.events() == []
    rebind_times = [now]
    while state(c) is State.REBINDING:
        now = tick(c)
        out = sent(c, now)
        rebind_times.append(now)
    assert rebind_times[:3] == pytest.approx([80.1, 90.1, 95.1])
    # The lease ran out: the event says so, and discovery starts again.
    assert now == pytest.approx(100.1)
    (ev,) = c.events()
    assert ev == Expired(lease)
    assert c.lease is None and state(c) is State.SELECTING
    (t,) = out
    assert t.message.message_type is MT.DISCOVER and t.dst == BCAST
    assert c.counters.expiries == 1


def test_renew_acked() -> None:
    c = make()
    bind(c, lease=100, renewal_time=50, rebinding_time=80)
    now = tick(c)
    req = one(c, now).message
    c.handle_message(now + 0.2, reply(req, MT.ACK, lease=200, renewal_time=100))
    (ev,) = c.events()
    assert isinstance(ev, Renewed) and not ev.rebound and state(c) is State.BOUND
    assert ev.lease.obtained_at == now and ev.lease.expires_at == pytest.approx(now + 200)
    assert c.poll_at() == pytest.approx(now + 100) and c.counters.renewals == 1


def test_rebind_acked_by_another_server() -> None:
    c = make(renew_min_retransmit=60.0)
    bind(c, lease=100, renewal_time=50, rebinding_time=80)
    tick(c)  # T1
    one(c, 50.1)
    now = tick(c)  # T2, straight away: half the time left is below the 60 s minimum
    assert state(c) is State.REBINDING and now == pytest.approx(80.1)
    req = one(c, now).message
    # The old server's id on an ACK in REBINDING is not required: another server answers.
    c.handle_message(now, reply(req, MT.ACK, server=SERVER2))
    (ev,) = c.events()
    assert isinstance(ev, Renewed) and ev.rebound and ev.lease.server_id == SERVER2
    assert c.counters.rebinds == 1


def test_nak_while_renewing_loses_the_lease() -> None:
    c = make()
    lease = bind(c, lease=100).lease
    now = tick(c)
    req = one(c, now).message
    c.handle_message(now, reply(req, MT.NAK, lease=None, message="wrong network"))
    (ev,) = c.events()
    assert ev == Nak(SERVER, "wrong network", lease)
    assert c.lease is None and state(c) is State.SELECTING
    assert one(c, now).message.message_type is MT.DISCOVER


def test_nak_while_requesting_restarts() -> None:
    c = make()
    c.start(0.0)
    c.handle_timer(0.0)
    c.handle_message(0.1, reply(one(c, 0.0).message, MT.OFFER))
    req = one(c, 0.1).message
    c.handle_message(0.2, reply(req, MT.NAK, lease=None))
    assert c.events() == [Nak(SERVER, None, None)]
    d = one(c, 0.2).message
    assert d.message_type is MT.DISCOVER and d.xid != req.xid and c.counters.naks == 1


def test_init_reboot_ack_and_nak() -> None:
    c = make()
    c.start(0.0, previous=OFFERED)
    assert state(c) is State.INIT_REBOOT
    c.handle_timer(0.0)
    t = one(c, 0.0)
    m = t.message
    assert state(c) is State.REBOOTING and t.dst == BCAST
    assert m.message_type is MT.REQUEST and m.requested_ip == OFFERED
    assert m.server_id is None and m.ciaddr == A(0)
    c.handle_message(0.3, reply(m, MT.ACK))
    (ev,) = c.events()
    assert isinstance(ev, Bound) and ev.lease.address == OFFERED and ev.lease.obtained_at == 0.0

    c = make()
    c.start(0.0, previous=A("10.9.9.9"))
    c.handle_timer(0.0)
    m = one(c, 0.0).message
    c.handle_message(0.3, reply(m, MT.NAK, lease=None))
    assert c.events() == [Nak(SERVER, None, None)] and state(c) is State.SELECTING


# --- ARP check, DECLINE, RELEASE ------------------------------------------------------------


def to_ack(c: DhcpClient) -> None:
    c.start(0.0)
    c.handle_timer(0.0)
    c.handle_message(0.0, reply(one(c, 0.0).message, MT.OFFER))
    c.handle_message(0.0, reply(one(c, 0.0).message, MT.ACK))


def test_arp_probes_then_bound() -> None:
    c = make(arp_probes=3, arp_probe_interval=1.0, arp_announce_wait=2.0)
    to_ack(c)
    assert state(c) is State.PROBING and c.events() == []
    probes = [(0.0, c.messages_to_send(0.0))]
    while state(c) is State.PROBING:
        now = tick(c)
        probes.append((now, c.messages_to_send(now)))
    assert probes == [
        (0.0, [ArpProbe(OFFERED)]),
        (1.0, [ArpProbe(OFFERED)]),
        (2.0, [ArpProbe(OFFERED)]),
        (4.0, []),
    ]
    (ev,) = c.events()
    assert isinstance(ev, Bound) and state(c) is State.BOUND
    # ARP after binding is not the client's business.
    c.handle_arp(5.0, op=2, sender_mac=OTHER_MAC, sender_ip=OFFERED, target_ip=SERVER)
    assert state(c) is State.BOUND


@pytest.mark.parametrize(
    ("op", "sender_ip", "target_ip"),
    [(2, OFFERED, A(0)), (1, OFFERED, OFFERED), (1, A(0), OFFERED)],
    ids=["reply", "announcement", "their-probe"],
)
def test_arp_conflict_declines(op: int, sender_ip: A, target_ip: A) -> None:
    c = make(arp_probes=3)
    to_ack(c)
    assert c.messages_to_send(0.0) == [ArpProbe(OFFERED)]
    # Our own probe echoed back, and unrelated traffic, are no conflict.
    c.handle_arp(0.1, op=1, sender_mac=MAC, sender_ip=A(0), target_ip=OFFERED)
    c.handle_arp(0.1, op=1, sender_mac=OTHER_MAC, sender_ip=SERVER, target_ip=A("10.0.0.7"))
    assert state(c) is State.PROBING
    c.handle_arp(0.5, op=op, sender_mac=OTHER_MAC, sender_ip=sender_ip, target_ip=target_ip)
    t = one(c, 0.5)
    assert t.dst == BCAST
    m = t.message
    assert m.message_type is MT.DECLINE and m.requested_ip == OFFERED
    assert m.server_id == SERVER and m.ciaddr == A(0)
    assert c.events() == [Declined(OFFERED, OTHER_MAC)]
    assert state(c) is State.INIT and c.poll_at() == 10.5 and c.lease is None
    now = tick(c)
    assert one(c, now).message.message_type is MT.DISCOVER


def test_stop_releases_the_lease() -> None:
    c = make()
    lease = bind(c).lease
    c.stop(10.0)
    t = one(c, 10.0)
    assert t.dst == SERVER
    m = t.message
    assert m.message_type is MT.RELEASE and m.ciaddr == OFFERED and m.server_id == SERVER
    assert c.events() == [Released(lease)]
    assert state(c) is State.STOPPED and c.poll_at() is None and c.counters.tx_release == 1
    c2 = make()
    c2.start(0.0)
    c2.handle_timer(0.0)
    c2.messages_to_send(0.0)
    c2.stop(1.0)
    assert c2.messages_to_send(1.0) == [] and c2.events() == []
    c.start(20.0)  # a stopped client starts again
    with pytest.raises(ValueError, match="start"):
        c.start(20.0)


# --- hostile and malformed replies ----------------------------------------------------------


def selecting() -> tuple[DhcpClient, DhcpRepr]:
    c = make()
    c.start(0.0)
    c.handle_timer(0.0)
    return c, one(c, 0.0).message


def test_hostile_replies_ignored_and_counted() -> None:
    c, d = selecting()
    good = bytearray(reply(d, MT.OFFER))
    wrong_xid = bytearray(good)
    wrong_xid[4] ^= 0xFF
    wrong_mac = bytearray(good)
    wrong_mac[33] ^= 0xFF
    not_reply = bytearray(good)
    not_reply[0] = 1
    truncated = good[:240] + b"\x35\x01\x02\x03\x04\x0a"  # router option cut short
    # Overload into ``file``, where an option runs past the field's end.
    overflow = bytearray(good)
    overflow[240:243] = b"\x34\x01\x01"
    overflow[108:236] = b"\x00" * 125 + b"\x06\x08\x01"
    no_server = reply(d, MT.OFFER, server=None)
    zero_addr = reply(d, MT.OFFER, yiaddr=A(0))
    bcast_addr = reply(d, MT.OFFER, yiaddr=BCAST)
    ack_in_selecting = reply(d, MT.ACK)
    bootp = DhcpRepr(op=DhcpOp.REPLY, xid=d.xid, chaddr=MAC, yiaddr=OFFERED).to_bytes()
    for bad in (
        wrong_xid,
        wrong_mac,
        not_reply,
        truncated,
        overflow,
        no_server,
        zero_addr,
        bcast_addr,
        ack_in_selecting,
        bootp,
        b"",
        b"\x02" * 100,
    ):
        c.handle_message(0.5, bad)
    assert state(c) is State.SELECTING and c.messages_to_send(0.5) == [] and c.events() == []
    k = c.counters
    assert (k.rx_wrong_xid, k.rx_wrong_chaddr, k.rx_not_reply) == (1, 1, 1)
    assert k.rx_malformed == 4 and k.rx_unexpected == 5 and k.rx_messages == 12
    c.handle_message(0.6, good)  # the real offer still works
    assert state(c) is State.REQUESTING


def test_wrong_acks_in_requesting_ignored() -> None:
    c, d = selecting()
    c.handle_message(0.1, reply(d, MT.OFFER))
    req = one(c, 0.1).message
    for bad in (
        reply(req, MT.ACK, server=SERVER2),  # another server's ACK
        reply(req, MT.NAK, server=SERVER2, lease=None),  # another server's NAK
        reply(req, MT.ACK, yiaddr=A("10.0.0.51")),  # not what we asked for
        reply(req, MT.ACK, lease=None),  # no lease time
        reply(req, MT.OFFER),
    ):
        c.handle_message(0.2, bad)
    assert state(c) is State.REQUESTING and c.events() == []
    assert c.counters.rx_unexpected == 5
    c.handle_message(0.3, reply(req, MT.ACK))
    assert state(c) is State.BOUND


def test_replies_when_not_waiting_are_ignored() -> None:
    c = make()
    bind(c)
    c.handle_message(1.0, reply(DhcpRepr(op=DhcpOp.REQUEST, xid=c.xid, chaddr=MAC), MT.NAK))
    assert state(c) is State.BOUND and c.counters.rx_unexpected == 1


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("timer"), st.floats(0, 5000)),
            st.tuples(st.just("bytes"), st.binary(max_size=400)),
            st.tuples(st.sampled_from(list(MT)), st.booleans()),
        ),
        max_size=40,
    )
)
def test_any_input_sequence_keeps_the_invariants(steps: list[Any]) -> None:
    c = make(arp_probes=1)
    c.start(0.0)
    now = 0.0
    last_out: list[DhcpRepr] = []
    for kind, arg in steps:
        if kind == "timer":
            now += arg
            c.handle_timer(now)
        elif kind == "bytes":
            c.handle_message(now, arg)
        else:
            base = last_out[-1] if last_out and arg else DhcpRepr(DhcpOp.REQUEST, 1, MAC)
            c.handle_message(now, reply(base, kind, lease=60))
        for o in c.messages_to_send(now):
            if isinstance(o, Transmit):
                last_out.append(o.message)
                assert o.message.op is DhcpOp.REQUEST and o.message.chaddr == MAC
        c.events()
        p = c.poll_at()
        assert p is None or p >= now - 1e-9 or state(c) is State.BOUND
        if state(c) in (State.BOUND, State.RENEWING, State.REBINDING, State.PROBING):
            assert c.lease is not None
        else:
            assert c.lease is None


# --- the remaining transitions --------------------------------------------------------------


def test_nak_while_rebinding_loses_the_lease() -> None:
    c = make(renew_min_retransmit=100.0)
    lease = bind(c, lease=100, renewal_time=50, rebinding_time=80).lease
    tick(c)  # T1
    c.messages_to_send(0.0)
    now = tick(c)  # T2
    assert state(c) is State.REBINDING
    req = one(c, now).message
    c.handle_message(now, reply(req, MT.NAK, server=SERVER2, lease=None))
    assert c.events() == [Nak(SERVER2, None, lease)]
    assert state(c) is State.SELECTING


def test_rebooting_without_answer_falls_back_to_init() -> None:
    c = make(request_tries=2)
    c.start(0.0, previous=OFFERED)
    c.handle_timer(0.0)
    first = one(c, 0.0).message
    now = tick(c)
    assert one(c, now).message.xid == first.xid and state(c) is State.REBOOTING
    now = tick(c)
    d = one(c, now).message
    assert d.message_type is MT.DISCOVER and state(c) is State.SELECTING


def test_stop_while_probing_or_renewing_releases() -> None:
    c = make(arp_probes=2)
    to_ack(c)
    lease = c.lease
    assert state(c) is State.PROBING and lease is not None
    c.messages_to_send(0.0)
    c.stop(0.5)
    t = one(c, 0.5)
    assert t.message.message_type is MT.RELEASE and t.dst == SERVER
    assert c.events() == [Released(lease)]
    c = make()
    lease = bind(c, lease=100).lease
    now = tick(c)
    assert state(c) is State.RENEWING
    c.messages_to_send(now)
    c.stop(now)
    assert one(c, now).message.message_type is MT.RELEASE
    assert c.events() == [Released(lease)]


def test_a_late_timer_past_the_expiry_expires_at_once() -> None:
    c = make()
    lease = bind(c, lease=100).lease
    c.handle_timer(1000.0)  # e.g. a suspended machine wakes up
    assert c.events() == [Expired(lease)]
    assert one(c, 1000.0).message.message_type is MT.DISCOVER
