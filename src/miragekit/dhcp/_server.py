"""A small DHCP server, sans-I/O: one subnet, one address pool, leases that expire.

Made so that simulated networks configure themselves (RFC 2131 4.3, the parts a single
authoritative server on one link needs): DISCOVER -> OFFER (the address is held for a
while), REQUEST -> ACK or NAK (selecting, init-reboot, renewing, rebinding), DECLINE
(the address is set aside), RELEASE, INFORM. No relay agents (giaddr set: ignored).

Replies to a client without an address are broadcast, so the server never needs to
resolve a MAC it has not heard from; replies to a client with an address (``ciaddr``)
are unicast to it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from ..macaddr import MacAddr
from ..wire.dhcp import DhcpMessageType, DhcpOp, DhcpRepr
from ._types import BROADCAST, Addr, receive_message

MT = DhcpMessageType
ZERO: Final = Addr(0)


@dataclass(slots=True)
class DhcpServerConfig:
    server_ip: Addr
    network: ipaddress.IPv4Network
    pool_first: Addr
    pool_last: Addr
    lease_time: int = 3600
    renewal_time: int | None = None
    rebinding_time: int | None = None
    routers: tuple[Addr, ...] = ()
    dns_servers: tuple[Addr, ...] = ()
    mtu: int | None = None
    offer_hold: float = 60.0
    """How long an offered address stays reserved for its client."""
    decline_hold: float = 600.0
    """How long an address a client declined (in use by someone) is not offered."""

    def __post_init__(self) -> None:
        net = self.network
        if self.server_ip not in net:
            raise ValueError(f"server_ip {self.server_ip} is not in network {net}")
        if not (self.pool_first in net and self.pool_last in net):
            raise ValueError(f"pool_first/pool_last must be in network {net}")
        if self.pool_first > self.pool_last:
            raise ValueError("pool_first must not be above pool_last")
        if not 0 < self.lease_time < 0xFFFFFFFF:
            raise ValueError(f"lease_time must be in 1..2**32-2, got {self.lease_time}")


@dataclass(slots=True)
class DhcpServerCounters:
    rx_messages: int = 0
    rx_malformed: int = 0
    rx_not_request: int = 0  # a BOOTREPLY, or no DHCP message type
    rx_relayed: int = 0  # giaddr set: relays are not supported
    rx_ignored: int = 0  # for another server, unknown client, unknown type
    offers: int = 0
    acks: int = 0
    naks: int = 0
    declines: int = 0
    releases: int = 0
    pool_exhausted: int = 0


@dataclass(slots=True)
class ServerLease:
    address: Addr
    client: bytes
    """The client identifier (option 61), or the MAC when the client sent none."""
    mac: MacAddr
    expires_at: float
    bound: bool
    """False while only offered."""


@dataclass(frozen=True, slots=True)
class ServerReply:
    """A message to send from port 67 to port 68 of ``dst``."""

    dst: Addr
    message: DhcpRepr

    @property
    def payload(self) -> bytes:
        return self.message.to_bytes()


@dataclass(slots=True)
class _Pool:
    leases: dict[bytes, ServerLease] = field(default_factory=dict)
    by_addr: dict[Addr, bytes] = field(default_factory=dict)
    declined: dict[Addr, float] = field(default_factory=dict)


class DhcpServer:
    """The server's state; feed it messages with :meth:`handle_message`."""

    def __init__(self, config: DhcpServerConfig) -> None:
        self.config = config
        self.counters = DhcpServerCounters()
        self._pool = _Pool()

    def leases(self, now: float) -> list[ServerLease]:
        """The leases bound now (not merely offered), by address."""
        self._expire(now)
        return sorted((x for x in self._pool.leases.values() if x.bound), key=lambda x: x.address)

    # --- the pool ------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        p = self._pool
        for key, lease in list(p.leases.items()):
            if lease.expires_at <= now:
                del p.leases[key]
                p.by_addr.pop(lease.address, None)
        for addr, until in list(p.declined.items()):
            if until <= now:
                del p.declined[addr]

    def _free(self, addr: Addr, key: bytes) -> bool:
        c = self.config
        if not c.pool_first <= addr <= c.pool_last or addr == c.server_ip:
            return False
        if addr in self._pool.declined:
            return False
        owner = self._pool.by_addr.get(addr)
        return owner is None or owner == key

    def _choose(self, key: bytes, requested: Addr | None) -> Addr | None:
        current = self._pool.leases.get(key)
        if current is not None:
            return current.address
        if requested is not None and self._free(requested, key):
            return requested
        c = self.config
        for i in range(int(c.pool_first), int(c.pool_last) + 1):
            a = Addr(i)
            if self._free(a, key):
                return a
        return None

    def _hold(self, key: bytes, mac: MacAddr, addr: Addr, until: float, bound: bool) -> None:
        p = self._pool
        old = p.leases.get(key)
        if old is not None and old.address != addr:
            p.by_addr.pop(old.address, None)
        p.leases[key] = ServerLease(addr, key, mac, until, bound)
        p.by_addr[addr] = key

    def _drop(self, key: bytes) -> None:
        lease = self._pool.leases.pop(key, None)
        if lease is not None:
            self._pool.by_addr.pop(lease.address, None)

    # --- messages ------------------------------------------------------------------------

    def handle_message(self, now: float, data: bytes | bytearray | memoryview) -> list[ServerReply]:
        """One message received on port 67; the replies to send. Never raises for input."""
        c = self.counters
        msg = receive_message(data, c)
        if msg is None:
            return []
        if msg.op is not DhcpOp.REQUEST or msg.message_type is None:
            c.rx_not_request += 1
            return []
        if msg.giaddr != ZERO:
            c.rx_relayed += 1
            return []
        self._expire(now)
        key = msg.client_id if msg.client_id else msg.chaddr.packed
        mt = msg.message_type
        ours = self.config.server_ip
        if mt is MT.DISCOVER:
            addr = self._choose(key, msg.requested_ip)
            if addr is None:
                c.pool_exhausted += 1
                return []
            lease = self._pool.leases.get(key)
            if lease is None or not lease.bound:
                self._hold(key, msg.chaddr, addr, now + self.config.offer_hold, False)
            c.offers += 1
            return [self._reply(msg, MT.OFFER, addr)]
        if mt is MT.REQUEST:
            return self._request(now, msg, key)
        if mt is MT.DECLINE:
            lease = self._pool.leases.get(key)
            if msg.server_id == ours and lease is not None and lease.address == msg.requested_ip:
                c.declines += 1
                self._drop(key)
                self._pool.declined[lease.address] = now + self.config.decline_hold
            else:
                c.rx_ignored += 1
            return []
        if mt is MT.RELEASE:
            lease = self._pool.leases.get(key)
            if msg.server_id in (None, ours) and lease is not None and lease.address == msg.ciaddr:
                c.releases += 1
                self._drop(key)
            else:
                c.rx_ignored += 1
            return []
        if mt is MT.INFORM and msg.ciaddr != ZERO:
            c.acks += 1
            return [self._reply(msg, MT.ACK, ZERO, lease=False)]
        c.rx_ignored += 1
        return []

    def _request(self, now: float, msg: DhcpRepr, key: bytes) -> list[ServerReply]:
        c = self.counters
        cfg = self.config
        lease = self._pool.leases.get(key)
        if msg.server_id is not None:  # SELECTING
            if msg.server_id != cfg.server_ip:
                if lease is not None and not lease.bound:
                    self._drop(key)  # it chose another server's offer
                c.rx_ignored += 1
                return []
            want = msg.requested_ip
        elif msg.ciaddr == ZERO:  # INIT-REBOOT
            want = msg.requested_ip
            if want is None:
                c.rx_ignored += 1
                return []
            if want not in cfg.network:
                return [self._nak(msg, "wrong network")]
            if lease is None and self._pool.by_addr.get(want) is None:
                c.rx_ignored += 1  # no record of this client: stay silent (RFC 2131 4.3.2)
                return []
        else:  # RENEWING, REBINDING
            want = msg.ciaddr
        if (
            want is None
            or not self._free(want, key)
            or (lease is not None and lease.address != want)
        ):
            return [self._nak(msg, "address not available")]
        self._hold(key, msg.chaddr, want, now + cfg.lease_time, True)
        c.acks += 1
        return [self._reply(msg, MT.ACK, want)]

    def _nak(self, msg: DhcpRepr, text: str) -> ServerReply:
        self.counters.naks += 1
        nak = DhcpRepr(
            op=DhcpOp.REPLY,
            xid=msg.xid,
            chaddr=msg.chaddr,
            message_type=MT.NAK,
            server_id=self.config.server_ip,
            message=text,
        )
        return ServerReply(BROADCAST, nak)

    def _reply(
        self, msg: DhcpRepr, mt: DhcpMessageType, addr: Addr, *, lease: bool = True
    ) -> ServerReply:
        cfg = self.config
        reply = DhcpRepr(
            op=DhcpOp.REPLY,
            xid=msg.xid,
            chaddr=msg.chaddr,
            message_type=mt,
            broadcast=msg.broadcast,
            ciaddr=msg.ciaddr,
            yiaddr=addr,
            siaddr=cfg.server_ip,
            server_id=cfg.server_ip,
            lease_time=cfg.lease_time if lease else None,
            renewal_time=cfg.renewal_time if lease else None,
            rebinding_time=cfg.rebinding_time if lease else None,
            subnet_mask=cfg.network.netmask,
            routers=cfg.routers,
            dns_servers=cfg.dns_servers,
            mtu=cfg.mtu,
        )
        dst = msg.ciaddr if msg.ciaddr != ZERO else BROADCAST
        return ServerReply(dst, reply)
