"""The DHCP server alone, and clients with servers on a manual clock (no frames): two
clients get different addresses, a server that goes away (renewing, rebinding, expiry),
rebinding to another server, NAK after renumbering, DECLINE, RELEASE, INIT-REBOOT."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
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
    DhcpServer,
    DhcpServerConfig,
    Event,
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
NET = ipaddress.IPv4Network("10.0.0.0/24")
BCAST = A("255.255.255.255")


def server_config(**kw: Any) -> DhcpServerConfig:
    args: dict[str, Any] = {
        "server_ip": A("10.0.0.1"),
        "network": NET,
        "pool_first": A("10.0.0.100"),
        "pool_last": A("10.0.0.109"),
        "lease_time": 100,
        "routers": (A("10.0.0.1"),),
        "dns_servers": (A("10.0.0.53"),),
        "mtu": 1400,
    }
    args.update(kw)
    return DhcpServerConfig(**args)


def mac(i: int) -> MacAddr:
    return MacAddr(bytes((2, 0, 0, 0, 0, i)))


def state(c: DhcpClient) -> State:
    return c.state


@dataclass
class Net:
    """Clients and servers on one broadcast domain, on a manual clock. Every reply goes to
    every client (they must pick out their own); ARP probes meet the hosts in ``arp``."""

    servers: list[DhcpServer]
    clients: list[DhcpClient] = field(default_factory=list)
    arp: dict[A, MacAddr] = field(default_factory=dict)
    events: dict[int, list[tuple[float, Event]]] = field(default_factory=dict)
    now: float = 0.0

    def add(self, i: int, seed: int | None = None, **cfg: Any) -> DhcpClient:
        cfg.setdefault("arp_probes", 0)
        c = DhcpClient(mac(i), rng=random.Random(seed or i), config=DhcpClientConfig(**cfg))
        self.clients.append(c)
        self.events[i] = []
        c.start(self.now)
        return c

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            for c in self.clients:
                for out in c.messages_to_send(self.now):
                    busy = True
                    if isinstance(out, ArpProbe):
                        owner = self.arp.get(out.address)
                        if owner is not None:
                            c.handle_arp(
                                self.now,
                                op=2,
                                sender_mac=owner,
                                sender_ip=out.address,
                                target_ip=A(0),
                            )
                        continue
                    assert isinstance(out, Transmit)
                    for s in self.servers:
                        if out.dst not in (BCAST, s.config.server_ip):
                            continue
                        for reply in s.handle_message(self.now, out.payload):
                            for c2 in self.clients:
                                c2.handle_message(self.now, reply.payload)
                for ev in c.events():
                    i = c.mac.packed[5]
                    self.events[i].append((self.now, ev))
                    if isinstance(ev, Bound):
                        self.arp[ev.lease.address] = c.mac
                    elif isinstance(ev, Expired | Released) or (
                        isinstance(ev, Nak) and ev.lost is not None
                    ):
                        lost = ev.lost if isinstance(ev, Nak) else ev.lease
                        assert lost is not None
                        self.arp.pop(lost.address, None)

    def run_until(self, end: float) -> None:
        self.pump()
        while True:
            times = [t for c in self.clients if (t := c.poll_at()) is not None]
            if not times or min(times) > end:
                break
            self.now = max(self.now, min(times))
            for c in self.clients:
                c.handle_timer(self.now)
            self.pump()
        self.now = end

    def kinds(self, i: int) -> list[str]:
        return [type(e).__name__ for _, e in self.events[i]]


def test_two_clients_get_different_addresses_and_a_third_finds_the_pool_full() -> None:
    server = DhcpServer(server_config(pool_last=A("10.0.0.101")))
    net = Net([server])
    a, b = net.add(1), net.add(2)
    net.run_until(1.0)
    assert state(a) is State.BOUND and state(b) is State.BOUND
    assert a.lease is not None and b.lease is not None
    assert {a.lease.address, b.lease.address} == {A("10.0.0.100"), A("10.0.0.101")}
    assert a.lease.routers == (A("10.0.0.1"),) and a.lease.mtu == 1400
    assert a.lease.network == NET and a.lease.server_id == A("10.0.0.1")
    assert [(x.address, x.mac) for x in server.leases(1.0)] == [
        (a.lease.address, mac(1)),
        (b.lease.address, mac(2)),
    ]
    # Each client ignored the other's replies (same server, other chaddr).
    assert a.counters.rx_wrong_chaddr >= 2 and b.counters.rx_wrong_chaddr >= 2
    c = net.add(3)
    net.run_until(30.0)
    assert state(c) is State.SELECTING and server.counters.pool_exhausted >= 3


def test_server_goes_away_renewing_rebinding_then_expiry() -> None:
    server = DhcpServer(server_config(lease_time=100))
    net = Net([server])
    c = net.add(1, renew_min_retransmit=10.0)
    net.run_until(1.0)
    lease = c.lease
    assert lease is not None and lease.expires_at == 100.0
    net.servers = []  # the server goes away
    net.run_until(60.0)
    assert state(c) is State.RENEWING
    net.run_until(90.0)
    assert state(c) is State.REBINDING and c.lease == lease
    net.run_until(99.9)
    assert net.kinds(1) == ["Bound"]
    net.run_until(100.0)
    assert net.kinds(1) == ["Bound", "Expired"]
    assert net.events[1][-1] == (100.0, Expired(lease))
    assert c.lease is None and state(c) is State.SELECTING
    k = c.counters
    assert k.expiries == 1 and k.tx_request >= 1 + 3 + 2  # selecting, renewing, rebinding
    # The server comes back: the client is configured again.
    net.servers = [server]
    net.run_until(200.0)
    assert state(c) is State.BOUND and net.kinds(1)[2] == "Bound"


def test_rebinding_to_another_server() -> None:
    first = DhcpServer(server_config())
    net = Net([first])
    c = net.add(1)
    net.run_until(1.0)
    assert c.lease is not None
    addr = c.lease.address
    second = DhcpServer(server_config(server_ip=A("10.0.0.2")))
    net.servers = [second]  # T1: no answer (unicast to the first); T2: the second answers
    net.run_until(95.0)
    _, ev = net.events[1][-1]
    assert isinstance(ev, Renewed) and ev.rebound
    assert ev.lease.address == addr and ev.lease.server_id == A("10.0.0.2")
    assert [x.address for x in second.leases(95.0)] == [addr]


def test_nak_after_renumbering_then_new_address() -> None:
    server = DhcpServer(server_config())
    net = Net([server])
    c = net.add(1)
    net.run_until(1.0)
    old = c.lease
    assert old is not None
    renumbered = DhcpServer(server_config(pool_first=A("10.0.0.150"), pool_last=A("10.0.0.159")))
    net.servers = [renumbered]
    net.run_until(60.0)
    assert net.kinds(1) == ["Bound", "Nak", "Bound"]
    nak = net.events[1][1][1]
    assert isinstance(nak, Nak) and nak.lost == old and nak.message == "address not available"
    assert c.lease is not None and c.lease.address == A("10.0.0.150")


def test_decline_when_the_address_is_in_use() -> None:
    server = DhcpServer(server_config())
    net = Net([server], arp={A("10.0.0.100"): mac(99)})  # a host the server knows nothing of
    c = net.add(1, arp_probes=2, decline_wait=10.0)
    net.run_until(30.0)
    assert net.kinds(1) == ["Declined", "Bound"]
    assert net.events[1][0][1] == Declined(A("10.0.0.100"), mac(99))
    assert server.counters.declines == 1
    assert c.lease is not None and c.lease.address == A("10.0.0.101")
    assert net.events[1][1][0] >= 10.0  # waited after declining


def test_release_frees_the_address_for_another_client() -> None:
    server = DhcpServer(server_config(pool_last=A("10.0.0.100")))
    net = Net([server])
    a = net.add(1)
    net.run_until(1.0)
    assert a.lease is not None
    a.stop(net.now)
    net.pump()
    assert net.kinds(1) == ["Bound", "Released"] and server.counters.releases == 1
    assert server.leases(net.now) == []
    b = net.add(2)
    net.run_until(2.0)
    assert b.lease is not None and b.lease.address == A("10.0.0.100")


def test_init_reboot_against_our_server() -> None:
    server = DhcpServer(server_config())
    net = Net([server])
    a = net.add(1)
    net.run_until(1.0)
    assert a.lease is not None
    addr = a.lease.address
    # The client "reboots" (no RELEASE) and asks for its address again: ACK.
    net.clients.remove(a)
    again = DhcpClient(mac(1), rng=random.Random(5), config=DhcpClientConfig(arp_probes=0))
    net.clients.append(again)
    again.start(net.now, previous=addr)
    net.run_until(2.0)
    assert again.lease is not None and again.lease.address == addr
    # Another client asking for that address at reboot is refused; a client asking for
    # an address of another network too.
    other = net.add(2, seed=9)
    other.stop(net.now)
    other.start(net.now, previous=addr)
    net.run_until(3.0)
    assert net.kinds(2)[0] == "Nak" and other.lease is not None and other.lease.address != addr
    third = net.add(3)
    third.stop(net.now)
    third.start(net.now, previous=A("192.168.9.9"))
    net.run_until(4.0)
    assert net.kinds(3)[0] == "Nak" and net.kinds(3)[1] == "Bound"


def test_server_ignores_and_counts_what_it_cannot_use() -> None:
    server = DhcpServer(server_config())
    m = mac(1)
    good = DhcpRepr(op=DhcpOp.REQUEST, xid=1, chaddr=m, message_type=MT.DISCOVER)
    assert len(server.handle_message(0.0, good.to_bytes())) == 1
    relayed = DhcpRepr(
        op=DhcpOp.REQUEST, xid=1, chaddr=m, message_type=MT.DISCOVER, giaddr=A("10.9.0.1")
    )
    reply = DhcpRepr(op=DhcpOp.REPLY, xid=1, chaddr=m, message_type=MT.OFFER)
    bootp = DhcpRepr(op=DhcpOp.REQUEST, xid=1, chaddr=m)
    other_server = DhcpRepr(
        op=DhcpOp.REQUEST,
        xid=1,
        chaddr=m,
        message_type=MT.REQUEST,
        server_id=A("10.0.0.77"),
        requested_ip=A("10.0.0.100"),
    )
    for bad in (b"", b"\x01" * 300, relayed.to_bytes(), reply.to_bytes(), bootp.to_bytes()):
        assert server.handle_message(0.0, bad) == []
    assert server.handle_message(0.0, other_server.to_bytes()) == []  # chose another server
    k = server.counters
    assert (k.rx_malformed, k.rx_relayed, k.rx_not_request, k.rx_ignored) == (2, 1, 2, 1)
    # The offer was dropped when the client chose another server: the address is free.
    other = DhcpRepr(op=DhcpOp.REQUEST, xid=2, chaddr=mac(2), message_type=MT.DISCOVER)
    (r,) = server.handle_message(0.0, other.to_bytes())
    assert r.message.yiaddr == A("10.0.0.100") and r.dst == BCAST


def test_offer_reply_fields_and_inform() -> None:
    server = DhcpServer(server_config(renewal_time=40, rebinding_time=80))
    d = DhcpRepr(
        op=DhcpOp.REQUEST,
        xid=7,
        chaddr=mac(1),
        message_type=MT.DISCOVER,
        requested_ip=A("10.0.0.105"),
        client_id=b"\x01abc",
    )
    (r,) = server.handle_message(0.0, d.to_bytes())
    o = DhcpRepr.from_bytes(r.payload)
    assert o.op is DhcpOp.REPLY and o.message_type is MT.OFFER and o.xid == 7
    assert o.yiaddr == A("10.0.0.105")  # the requested address, free
    assert (o.lease_time, o.renewal_time, o.rebinding_time) == (100, 40, 80)
    assert o.subnet_mask == A("255.255.255.0") and o.server_id == A("10.0.0.1")
    assert o.routers == (A("10.0.0.1"),) and o.dns_servers == (A("10.0.0.53"),) and o.mtu == 1400
    inform = DhcpRepr(
        op=DhcpOp.REQUEST, xid=8, chaddr=mac(3), message_type=MT.INFORM, ciaddr=A("10.0.0.7")
    )
    (r,) = server.handle_message(0.0, inform.to_bytes())
    assert r.dst == A("10.0.0.7") and r.message.lease_time is None
    assert r.message.message_type is MT.ACK and r.message.yiaddr == A(0)
    assert server.leases(0.0) == []  # offers and INFORM bind nothing


def test_offer_hold_expires() -> None:
    server = DhcpServer(server_config(pool_last=A("10.0.0.100"), offer_hold=5.0))
    d1 = DhcpRepr(op=DhcpOp.REQUEST, xid=1, chaddr=mac(1), message_type=MT.DISCOVER)
    d2 = DhcpRepr(op=DhcpOp.REQUEST, xid=2, chaddr=mac(2), message_type=MT.DISCOVER)
    assert len(server.handle_message(0.0, d1.to_bytes())) == 1
    assert server.handle_message(1.0, d2.to_bytes()) == []  # held for the first client
    assert len(server.handle_message(6.0, d2.to_bytes())) == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"server_ip": A("10.1.0.1")},
        {"pool_first": A("10.0.1.5")},
        {"pool_first": A("10.0.0.200"), "pool_last": A("10.0.0.100")},
        {"lease_time": 0},
    ],
)
def test_server_config_checked(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        server_config(**kw)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=400),
            st.builds(
                lambda mt, i, req, ci, sid: DhcpRepr(
                    op=DhcpOp.REQUEST,
                    xid=i,
                    chaddr=mac(i % 4),
                    message_type=mt,
                    requested_ip=req,
                    ciaddr=ci,
                    server_id=sid,
                ).to_bytes(),
                st.sampled_from(list(MT)),
                st.integers(0, 7),
                st.none() | st.sampled_from([A("10.0.0.100"), A("10.0.0.101"), A("10.9.0.1")]),
                st.sampled_from([A(0), A("10.0.0.100"), A("10.0.0.102")]),
                st.none() | st.sampled_from([A("10.0.0.1"), A("10.0.0.2")]),
            ),
        ),
        max_size=30,
    ),
    st.lists(st.floats(0, 50), min_size=30, max_size=30),
)
def test_server_never_double_books(msgs: list[bytes], gaps: list[float]) -> None:
    server = DhcpServer(server_config(pool_last=A("10.0.0.102"), lease_time=60))
    now = 0.0
    for data, gap in zip(msgs, gaps, strict=False):
        now += gap
        for r in server.handle_message(now, data):
            assert r.message.op is DhcpOp.REPLY
        leases = server.leases(now)
        addrs = [x.address for x in leases]
        assert len(addrs) == len(set(addrs))
        assert all(A("10.0.0.100") <= a <= A("10.0.0.102") for a in addrs)
        assert all(x.expires_at > now for x in leases)
