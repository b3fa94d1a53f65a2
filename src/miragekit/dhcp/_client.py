"""The RFC 2131 client state machine, sans-I/O.

Time comes in as ``now`` (seconds on any monotonic clock); messages come in as bytes
(:meth:`DhcpClient.handle_message`), ARP packets seen on the link as fields
(:meth:`DhcpClient.handle_arp`). What to send comes out of
:meth:`DhcpClient.messages_to_send`, what happened out of :meth:`DhcpClient.events`,
and the next deadline out of :meth:`DhcpClient.poll_at`. A driver calls
:meth:`DhcpClient.handle_timer` at that deadline. Randomness (transaction ids, backoff
jitter) comes from a ``random.Random`` the caller seeds, so a run repeats exactly.

States (RFC 2131 figure 5), plus PROBING between the ACK and BOUND (the ARP check of
RFC 2131 4.4.1, done as in RFC 5227, simplified) and STOPPED after :meth:`stop`::

    INIT -> SELECTING -> REQUESTING -> PROBING -> BOUND -> RENEWING -> REBINDING
    INIT_REBOOT -> REBOOTING -> PROBING

A reply that does not belong to the current exchange (malformed, not a reply, another
client's hardware address, another transaction id, a type the state does not expect) is
ignored and counted in :class:`DhcpClientCounters`.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from enum import Enum

from ..macaddr import MacAddr
from ..wire.dhcp import (
    INFINITE,
    OPT_CLASSLESS_ROUTES,
    OPT_DNS,
    OPT_HOST_NAME,
    OPT_LEASE_TIME,
    OPT_MTU,
    OPT_REBINDING_TIME,
    OPT_RENEWAL_TIME,
    OPT_ROUTER,
    OPT_SUBNET_MASK,
    DhcpMessageType,
    DhcpOp,
    DhcpRepr,
)
from ._types import (
    BROADCAST,
    Addr,
    ArpProbe,
    Bound,
    Declined,
    Event,
    Expired,
    Lease,
    Nak,
    Output,
    Released,
    Renewed,
    Transmit,
    receive_message,
)

MT = DhcpMessageType
ZERO = Addr(0)


class State(Enum):
    INIT = "INIT"
    SELECTING = "SELECTING"
    REQUESTING = "REQUESTING"
    PROBING = "PROBING"
    BOUND = "BOUND"
    RENEWING = "RENEWING"
    REBINDING = "REBINDING"
    INIT_REBOOT = "INIT-REBOOT"
    REBOOTING = "REBOOTING"
    STOPPED = "STOPPED"


@dataclass(slots=True)
class DhcpClientConfig:
    retransmit_base: float = 4.0
    """First retransmission delay; doubled per try (RFC 2131 4.1)."""
    retransmit_max: float = 64.0
    jitter: float = 1.0
    """Each delay is randomised by a uniform amount in ``[-jitter, +jitter]``."""
    request_tries: int = 4
    """REQUESTs sent in REQUESTING/REBOOTING before starting over from INIT."""
    renew_min_retransmit: float = 60.0
    """RENEWING/REBINDING wait half the remaining time, but at least this (RFC 2131 4.4.5)."""
    init_delay: float = 0.0
    """The first DISCOVER waits a random time up to this (RFC 2131 4.4.1 suggests 10)."""
    decline_wait: float = 10.0
    """After a DECLINE, the wait before starting over (RFC 2131 3.1 step 5)."""
    arp_probes: int = 3
    """ARP probes for an acknowledged address before using it; 0 disables the check."""
    arp_probe_interval: float = 1.0
    arp_announce_wait: float = 2.0
    """The wait after the last probe before the address is bound (RFC 5227 ANNOUNCE_WAIT)."""
    broadcast_flag: bool = False
    """Ask servers to broadcast their replies (for stacks that cannot take a unicast
    before they have an address; ours can)."""
    host_name: str | None = None
    client_id: bytes | None = None
    """Option 61; by default type 1 (Ethernet) and the MAC."""
    parameter_request_list: tuple[int, ...] = (
        OPT_SUBNET_MASK,
        OPT_CLASSLESS_ROUTES,
        OPT_ROUTER,
        OPT_DNS,
        OPT_HOST_NAME,
        OPT_MTU,
        OPT_LEASE_TIME,
        OPT_RENEWAL_TIME,
        OPT_REBINDING_TIME,
    )


@dataclass(slots=True)
class DhcpClientCounters:
    rx_messages: int = 0
    rx_malformed: int = 0  # WireError: truncated options, overflow, bad cookie, ...
    rx_not_reply: int = 0  # op is BOOTREQUEST (another client's message)
    rx_wrong_chaddr: int = 0
    rx_wrong_xid: int = 0
    rx_unexpected: int = 0  # not a type this state waits for, or missing fields
    tx_discover: int = 0
    tx_request: int = 0
    tx_decline: int = 0
    tx_release: int = 0
    retransmissions: int = 0
    offers: int = 0
    acks: int = 0
    naks: int = 0
    declines: int = 0
    renewals: int = 0
    rebinds: int = 0
    expiries: int = 0
    arp_probes: int = 0


def classless_routes(data: bytes) -> tuple[tuple[ipaddress.IPv4Network, Addr], ...] | None:
    """Option 121 (RFC 3442): ``(destination, router)`` pairs, or None when malformed
    (the option is then ignored, and the Router option used)."""
    out = []
    i = 0
    n = len(data)
    while i < n:
        width = data[i]
        size = (width + 7) // 8
        if width > 32 or i + 1 + size + 4 > n:
            return None
        dest = int.from_bytes(data[i + 1 : i + 1 + size].ljust(4, b"\0"), "big")
        try:
            net = ipaddress.IPv4Network((dest, width))
        except ValueError:
            return None  # bits set beyond the width
        gw = Addr(data[i + 1 + size : i + 5 + size])
        out.append((net, gw))
        i += 5 + size
    return tuple(out)


def _classful(addr: Addr) -> int:
    first = addr.packed[0]
    return 8 if first < 128 else 16 if first < 192 else 24


def _usable(addr: Addr) -> bool:
    return not (
        addr.is_unspecified
        or addr.is_multicast
        or addr.is_loopback
        or addr == BROADCAST
        or addr.is_reserved
    )


class DhcpClient:
    """One DHCP client for the interface with hardware address ``mac``."""

    def __init__(
        self,
        mac: MacAddr,
        *,
        rng: random.Random,
        config: DhcpClientConfig | None = None,
    ) -> None:
        self.mac = mac
        self.rng = rng
        self.config = config or DhcpClientConfig()
        self.counters = DhcpClientCounters()
        self.state = State.STOPPED
        self.lease: Lease | None = None
        """The lease being used (BOUND, RENEWING, REBINDING) or checked (PROBING)."""
        self.xid = 0
        self._deadline: float | None = None
        self._tries = 0
        self._started = 0.0
        self._request_at = 0.0
        self._offer: DhcpRepr | None = None
        self._requested: Addr | None = None
        self._probes_left = 0
        self._out: list[Output] = []
        self._events: list[Event] = []

    # --- the driver's interface ----------------------------------------------------------

    def start(self, now: float, *, previous: Addr | None = None) -> None:
        """Begin: from INIT, or from INIT-REBOOT asking for ``previous`` again."""
        if self.state is not State.STOPPED:
            raise ValueError(f"start: the client is already running ({self.state.value})")
        self.lease = None
        if previous is not None:
            self._requested = previous
            self._enter(State.INIT_REBOOT, now)
        else:
            self._enter(State.INIT, now + self.rng.uniform(0.0, self.config.init_delay))

    def stop(self, now: float) -> None:
        """Stop; a lease held (or being checked) is released to its server."""
        lease = self.lease
        if lease is not None and self.state in (
            State.PROBING,
            State.BOUND,
            State.RENEWING,
            State.REBINDING,
        ):
            self.xid = self._new_xid()
            msg = self._message(MT.RELEASE, ciaddr=lease.address, server_id=lease.server_id)
            self.counters.tx_release += 1
            self._out.append(Transmit(lease.server_id, msg))
            self._events.append(Released(lease))
        self.lease = None
        self.state = State.STOPPED
        self._deadline = None

    def poll_at(self) -> float | None:
        """When :meth:`handle_timer` must be called next (``None``: only on input)."""
        return self._deadline

    def messages_to_send(self, now: float) -> list[Output]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        ev, self._events = self._events, []
        return ev

    # --- timers --------------------------------------------------------------------------

    def _backoff(self, tries: int) -> float:
        c = self.config
        delay = min(c.retransmit_base * 2.0 ** (tries - 1), c.retransmit_max)
        return max(0.0, delay + self.rng.uniform(-c.jitter, c.jitter))

    def _enter(self, state: State, deadline: float | None) -> None:
        self.state = state
        self._tries = 0
        self._deadline = deadline

    def handle_timer(self, now: float) -> None:
        d = self._deadline
        if d is None or now < d:
            return
        s = self.state
        if s is State.INIT:
            self.xid = self._new_xid()
            self._started = now
            self._offer = None
            self.state = State.SELECTING
            self._send_discover(now)
        elif s is State.SELECTING:
            self.counters.retransmissions += 1
            self._send_discover(now)
        elif s is State.INIT_REBOOT:
            self.xid = self._new_xid()
            self._started = self._request_at = now
            self.state = State.REBOOTING
            self._send_request(now)
        elif s in (State.REQUESTING, State.REBOOTING):
            if self._tries >= self.config.request_tries:
                self._enter(State.INIT, now)
                self.handle_timer(now)
                return
            self.counters.retransmissions += 1
            self._send_request(now)
        elif s is State.PROBING:
            self._probe_step(now)
        elif s in (State.BOUND, State.RENEWING, State.REBINDING):
            self._lease_timer(now)

    def _send_discover(self, now: float) -> None:
        self._tries += 1
        self.counters.tx_discover += 1
        self._out.append(Transmit(BROADCAST, self._message(MT.DISCOVER, now=now)))
        self._deadline = now + self._backoff(self._tries)

    def _send_request(self, now: float) -> None:
        """A REQUEST as the state wants it (RFC 2131 4.3.2 table 4), and its retry time."""
        self._tries += 1
        self.counters.tx_request += 1
        s = self.state
        if s is State.REQUESTING:
            assert self._offer is not None
            msg = self._message(
                MT.REQUEST,
                now=now,
                requested_ip=self._offer.yiaddr,
                server_id=self._offer.server_id,
            )
            dst = BROADCAST
        elif s is State.REBOOTING:
            msg = self._message(MT.REQUEST, now=now, requested_ip=self._requested)
            dst = BROADCAST
        else:
            lease = self.lease
            assert lease is not None
            msg = self._message(MT.REQUEST, now=now, ciaddr=lease.address)
            dst = lease.server_id if s is State.RENEWING else BROADCAST
        self._out.append(Transmit(dst, msg))
        if s in (State.REQUESTING, State.REBOOTING):
            self._deadline = now + self._backoff(self._tries)
        else:
            lease = self.lease
            assert lease is not None
            until = lease.rebind_at if s is State.RENEWING else lease.expires_at
            assert until is not None
            wait = max((until - now) / 2, self.config.renew_min_retransmit)
            self._deadline = min(now + wait, until)

    def _lease_timer(self, now: float) -> None:
        lease = self.lease
        assert lease is not None
        if lease.expires_at is not None and now >= lease.expires_at:
            self.counters.expiries += 1
            self._events.append(Expired(lease))
            self.lease = None
            self._enter(State.INIT, now)
            self.handle_timer(now)
            return
        if lease.rebind_at is not None and now >= lease.rebind_at:
            self._extend(State.REBINDING, self.state is not State.REBINDING, now)
        elif lease.renew_at is not None and now >= lease.renew_at:
            self._extend(State.RENEWING, self.state is State.BOUND, now)
        else:
            self._deadline = lease.renew_at  # time jumped back? wait for T1 again

    def _extend(self, state: State, entering: bool, now: float) -> None:
        """Ask to extend the lease in ``state`` (RENEWING at T1, REBINDING at T2): a new
        exchange when ``entering`` it, else a retransmission of the request."""
        if entering:
            self.state = state
            self.xid = self._new_xid()
            self._started = self._request_at = now
            self._tries = 0
        else:
            self.counters.retransmissions += 1
        self._send_request(now)

    def _probe_step(self, now: float) -> None:
        lease = self.lease
        assert lease is not None
        if self._probes_left > 0:
            self._probes_left -= 1
            self.counters.arp_probes += 1
            self._out.append(ArpProbe(lease.address))
            c = self.config
            self._deadline = now + (
                c.arp_probe_interval if self._probes_left else c.arp_announce_wait
            )
            return
        self._bind(now, lease)

    def _bind(self, now: float, lease: Lease) -> None:
        self.state = State.BOUND
        self._tries = 0
        self._deadline = lease.renew_at
        self._events.append(Bound(lease))

    # --- input ---------------------------------------------------------------------------

    def handle_message(self, now: float, data: bytes | bytearray | memoryview) -> None:
        """One message received on port 68. Never raises for what the peer sent."""
        c = self.counters
        msg = receive_message(data, c)
        if msg is None:
            return
        if msg.op is not DhcpOp.REPLY:
            c.rx_not_reply += 1
            return
        if msg.chaddr != self.mac:
            c.rx_wrong_chaddr += 1
            return
        s = self.state
        waiting = s in (
            State.SELECTING,
            State.REQUESTING,
            State.REBOOTING,
            State.RENEWING,
            State.REBINDING,
        )
        if not waiting:
            c.rx_unexpected += 1
            return
        if msg.xid != self.xid:
            c.rx_wrong_xid += 1
            return
        mt = msg.message_type
        if s is State.SELECTING:
            if mt is MT.OFFER and msg.server_id is not None and _usable(msg.yiaddr):
                c.offers += 1
                self._offer = msg
                self.state = State.REQUESTING
                self._tries = 0
                self._request_at = now
                self._send_request(now)
                return
        elif mt is MT.ACK:
            if self._accept_ack(now, msg):
                return
        elif mt is MT.NAK and self._accept_nak(now, msg):
            return
        c.rx_unexpected += 1

    def _expected_server(self) -> Addr | None:
        if self.state is State.REQUESTING:
            assert self._offer is not None
            return self._offer.server_id
        if self.state is State.RENEWING:
            assert self.lease is not None
            return self.lease.server_id
        return None  # REBOOTING, REBINDING: any server may answer

    def _accept_ack(self, now: float, msg: DhcpRepr) -> bool:
        s = self.state
        want = self._expected_server()
        if want is not None and msg.server_id not in (None, want):
            return False
        if s is State.REQUESTING:
            assert self._offer is not None
            addr: Addr | None = self._offer.yiaddr
        elif s is State.REBOOTING:
            addr = self._requested
        else:
            assert self.lease is not None
            addr = self.lease.address
        server = msg.server_id or want
        if msg.yiaddr != addr or server is None or msg.lease_time is None:
            return False
        lease = self._make_lease(msg, server, self._request_at)
        self.counters.acks += 1
        if s in (State.RENEWING, State.REBINDING):
            rebound = s is State.REBINDING
            if rebound:
                self.counters.rebinds += 1
            else:
                self.counters.renewals += 1
            self.lease = lease
            self.state = State.BOUND
            self._tries = 0
            self._deadline = lease.renew_at
            self._events.append(Renewed(lease, rebound=rebound))
            return True
        self.lease = lease
        self.state = State.PROBING
        self._probes_left = self.config.arp_probes
        self._tries = 0
        self._deadline = now
        self._probe_step(now)
        return True

    def _accept_nak(self, now: float, msg: DhcpRepr) -> bool:
        want = self._expected_server()
        if want is not None and msg.server_id not in (None, want):
            return False
        self.counters.naks += 1
        lost = self.lease if self.state in (State.RENEWING, State.REBINDING) else None
        self._events.append(Nak(msg.server_id, msg.message, lost))
        self.lease = None
        self._enter(State.INIT, now + self.rng.uniform(0.0, self.config.init_delay))
        self.handle_timer(now)
        return True

    def handle_arp(
        self, now: float, *, op: int, sender_mac: MacAddr, sender_ip: Addr, target_ip: Addr
    ) -> None:
        """An ARP packet seen on the link (not sent by us). While PROBING, a packet from
        the address, or another host's probe for it, is a conflict (RFC 5227 2.1.1)."""
        lease = self.lease
        if self.state is not State.PROBING or lease is None or sender_mac == self.mac:
            return
        addr = lease.address
        if sender_ip == addr or (op == 1 and sender_ip == ZERO and target_ip == addr):
            self.counters.declines += 1
            self.counters.tx_decline += 1
            msg = self._message(MT.DECLINE, requested_ip=addr, server_id=lease.server_id)
            self._out.append(Transmit(BROADCAST, msg))
            self._events.append(Declined(addr, sender_mac))
            self.lease = None
            self._enter(State.INIT, now + self.config.decline_wait)

    # --- messages ------------------------------------------------------------------------

    def _new_xid(self) -> int:
        return self.rng.getrandbits(32)

    def _message(
        self,
        mt: DhcpMessageType,
        *,
        now: float | None = None,
        ciaddr: Addr = ZERO,
        requested_ip: Addr | None = None,
        server_id: Addr | None = None,
    ) -> DhcpRepr:
        c = self.config
        secs = 0 if now is None else min(0xFFFF, max(0, int(now - self._started)))
        full = mt in (MT.DISCOVER, MT.REQUEST)
        return DhcpRepr(
            op=DhcpOp.REQUEST,
            xid=self.xid,
            chaddr=self.mac,
            message_type=mt,
            secs=secs,
            broadcast=c.broadcast_flag and full and ciaddr == ZERO,
            ciaddr=ciaddr,
            requested_ip=requested_ip,
            server_id=server_id,
            client_id=c.client_id if c.client_id is not None else b"\x01" + self.mac.packed,
            host_name=c.host_name if full else None,
            parameter_request_list=c.parameter_request_list if full else (),
        )

    def _make_lease(self, msg: DhcpRepr, server: Addr, at: float) -> Lease:
        addr = msg.yiaddr
        if msg.subnet_mask is not None:
            try:
                net = ipaddress.IPv4Network((addr, str(msg.subnet_mask)), strict=False)
            except ValueError:  # not a contiguous mask
                net = ipaddress.IPv4Network((addr, _classful(addr)), strict=False)
        else:
            net = ipaddress.IPv4Network((addr, _classful(addr)), strict=False)
        lt = msg.lease_time
        assert lt is not None
        if lt == INFINITE:
            renew = rebind = expires = None
            length: float | None = None
        else:
            length = float(lt)
            t2 = float(msg.rebinding_time) if msg.rebinding_time is not None else 0.875 * lt
            if not 0 < t2 <= lt:
                t2 = 0.875 * lt
            t1 = float(msg.renewal_time) if msg.renewal_time is not None else 0.5 * lt
            if not 0 < t1 <= t2:
                t1 = min(0.5 * lt, t2)
            renew, rebind, expires = at + t1, at + t2, at + length
        mtu = msg.mtu if msg.mtu is not None and msg.mtu >= 68 else None
        routers = msg.routers
        routes: tuple[tuple[ipaddress.IPv4Network, Addr], ...] = ()
        data = dict(msg.other).get(OPT_CLASSLESS_ROUTES)
        if data is not None:
            parsed = classless_routes(data)
            if parsed is not None:
                # RFC 3442: with option 121 the Router option MUST be ignored; the default
                # route, if any, is the 0.0.0.0/0 entry.
                routes = parsed
                routers = tuple(gw for net_, gw in parsed if net_.prefixlen == 0)
        return Lease(
            address=addr,
            network=net,
            server_id=server,
            obtained_at=at,
            lease_time=length,
            renew_at=renew,
            rebind_at=rebind,
            expires_at=expires,
            routers=routers,
            routes=routes,
            dns_servers=msg.dns_servers,
            mtu=mtu,
            host_name=msg.host_name,
        )
