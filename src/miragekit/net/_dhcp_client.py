"""Runs the sans-I/O DHCP client on an :class:`IPv4Stack`, and applies its leases.

The driver only moves things: DHCP messages from UDP port 68 into the client, ARP
packets seen by the stack into its address check, its messages out from 0.0.0.0:68 (or
the leased address) to port 67, its probes out through ARP, and one loop timer at its
:meth:`~miragekit.dhcp.DhcpClient.poll_at`. Events change the IPv4 layer: a lease sets
the address, netmask, default gateway and MTU; expiry, a NAK and release remove them.

The stack starts unconfigured: ``IPv4Stack.connect(netif, cidr="0.0.0.0/0")``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections import deque
from collections.abc import Callable

from ..dhcp import (
    ArpProbe,
    Bound,
    DhcpClient,
    DhcpClientConfig,
    Event,
    Expired,
    Lease,
    Nak,
    Released,
    Renewed,
    Transmit,
)
from ..macaddr import MacAddr
from ..result import Error, Ok, Timeout
from ..wire.dhcp import CLIENT_PORT, SERVER_PORT
from ._ipstack import IPv4Stack
from ._timer import Wakeup

Addr = ipaddress.IPv4Address
_log = logging.getLogger(__name__)


class DhcpClientDriver:
    """One DHCP client on ``stack``; :meth:`start` it, :meth:`stop` releases the lease."""

    def __init__(
        self,
        stack: IPv4Stack,
        *,
        config: DhcpClientConfig | None = None,
        rng: random.Random | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.stack = stack
        self._loop = asyncio.get_running_loop()
        rng = rng or random.Random(stack.ipv4.rng.getrandbits(64))
        self.client = DhcpClient(stack.ethif.mac(), rng=rng, config=config)
        self.lease: Lease | None = None
        """The lease applied to the stack now, if any."""
        self.history: deque[tuple[float, Event]] = deque(maxlen=256)
        """The latest events with their times, for inspection."""
        self.rx_wrong_port = 0
        self._on_event = on_event
        self._link_mtu = stack.ipv4.mtu
        self._wakeup = Wakeup(self._loop, self._on_timer)
        self._bound = asyncio.Event()

    def start(self, *, previous: Addr | None = None) -> None:
        """Listen on port 68 and begin (from INIT-REBOOT when ``previous`` is given)."""
        self.stack.udp.listen(CLIENT_PORT, self._on_udp)
        self.stack.ipv4.arp.observer = self._on_arp
        now = self._loop.time()
        self.client.start(now, previous=previous)
        self.client.handle_timer(now)  # the first message now, unless a delay is asked
        self._pump()

    async def stop(self) -> None:
        """Release the lease (the RELEASE goes out before the address is removed)."""
        self.client.stop(self._loop.time())
        self._pump()
        self._wakeup.cancel()
        self.stack.udp.listen(CLIENT_PORT, None)
        if self.stack.ipv4.arp.observer == self._on_arp:
            self.stack.ipv4.arp.observer = None

    async def wait_bound(self, timeout: float | None = None) -> Ok[Lease] | Error[Timeout]:
        """The applied lease, once there is one; ``Error(Timeout())`` after ``timeout`` s."""
        try:
            await asyncio.wait_for(self._bound.wait(), timeout)
        except TimeoutError:
            return Error(Timeout())
        assert self.lease is not None
        return Ok(self.lease)

    # --- input ---------------------------------------------------------------------------

    async def _on_udp(self, src: Addr, dst: Addr, sport: int, buf: memoryview) -> None:
        if sport != SERVER_PORT:
            self.rx_wrong_port += 1
            return
        self.client.handle_message(self._loop.time(), buf)
        self._pump()

    def _on_arp(self, op: int, sha: bytes, spa: int, tpa: int) -> None:
        self.client.handle_arp(
            self._loop.time(),
            op=op,
            sender_mac=MacAddr(sha),
            sender_ip=Addr(spa),
            target_ip=Addr(tpa),
        )
        self._pump()

    def _on_timer(self, now: float) -> None:
        self.client.handle_timer(now)
        self._pump()

    # --- output --------------------------------------------------------------------------

    def _pump(self) -> None:
        now = self._loop.time()
        out_msgs = self.client.messages_to_send(now)
        events = self.client.events()
        # A lost lease is removed before the messages go: the DISCOVER that follows an
        # expiry or a NAK leaves from 0.0.0.0, not the old address (RFC 2131 4.1). A
        # release is applied after: the RELEASE leaves from the leased address.
        first: list[Event] = [
            ev for ev in events if _loses_lease(ev) and not isinstance(ev, Released)
        ]
        for ev in first:
            self._event(now, ev)
        for out in out_msgs:
            if isinstance(out, Transmit):
                self.stack.udp.send(
                    out.payload, dest_ip=out.dst, dest_port=SERVER_PORT, source_port=CLIENT_PORT
                )
            elif isinstance(out, ArpProbe):
                self.stack.ipv4.arp.probe(int(out.address))
        for ev in events:
            if all(ev is not f for f in first):
                self._event(now, ev)
        when = self.client.poll_at()
        if when is not None:
            self._wakeup.at(when)

    def _event(self, now: float, ev: Event) -> None:
        self.history.append((now, ev))
        self._apply(ev)
        if self._on_event is not None:
            try:
                self._on_event(ev)
            except Exception:
                _log.exception("DHCP event callback failed")

    def _apply(self, ev: Event) -> None:
        ip = self.stack.ipv4
        if isinstance(ev, Bound | Renewed):
            lease = ev.lease
            ip.configure(lease.interface, lease.routers[:1])
            ip.mtu = min(lease.mtu, self._link_mtu) if lease.mtu else self._link_mtu
            self.lease = lease
            self._bound.set()
            _log.info("DHCP: %s %s from %s", type(ev).__name__, lease.interface, lease.server_id)
        elif _loses_lease(ev):
            if self.lease is not None:
                _log.info("DHCP: %s, %s removed", type(ev).__name__, self.lease.interface)
            ip.configure(None)
            ip.mtu = self._link_mtu
            self.lease = None
            self._bound.clear()


def _loses_lease(ev: Event) -> bool:
    return isinstance(ev, Expired | Released) or (isinstance(ev, Nak) and ev.lost is not None)


async def dhcp_configure(
    stack: IPv4Stack,
    *,
    timeout: float = 30.0,
    config: DhcpClientConfig | None = None,
    rng: random.Random | None = None,
    previous: Addr | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> Ok[DhcpClientDriver] | Error[Timeout]:
    """Configure ``stack`` by DHCP: the running driver once a lease is applied, or
    ``Error(Timeout())`` (the client stopped) when none came within ``timeout`` seconds."""
    driver = DhcpClientDriver(stack, config=config, rng=rng, on_event=on_event)
    driver.start(previous=previous)
    r = await driver.wait_bound(timeout)
    if isinstance(r, Error):
        await driver.stop()
        return r
    return Ok(driver)
