"""A simulated cluster: named hosts on one switch, each running unmodified asyncio code.

Why: a distributed service is tested by running its real code on several hosts under
loss, delay and partitions, and replaying a failure from its seed. :class:`Network` puts
an address plan and names over :class:`~miragekit.link.VnetSwitch` and
:class:`~miragekit.stack.DirectStackV4`: every host gets its own stack, its ``main`` runs
bound to it (``asyncio.open_connection("db", 5432)`` goes through that stack, and "db"
resolves from the plan, inside the simulation), on one virtual-time loop.

The plan is checked while it is written (unknown or duplicate names, addresses outside
the subnet or taken, unknown link parameters), so a mistake is one clear error before
anything runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Literal

from ._loop import DEFAULT_IDLE_TIMEOUT, SimLoop, run_on

if TYPE_CHECKING:
    from ..link import LinkParams, VnetIf, VnetSwitch
    from ..stack import DirectStackV4

Main = Callable[[], Awaitable[object]]
"""A host's program: an async function of no arguments."""

Addr = ipaddress.IPv4Address
Addr6 = ipaddress.IPv6Address
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class HostOutcome:
    """How one host's ``main`` ended: ``state`` is "returned" (``value``), "raised"
    (``error``), "running" (still going at ``until``) or "idle" (no ``main``)."""

    name: str
    ip: Addr
    state: Literal["returned", "raised", "running", "idle"]
    value: object = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """What :meth:`Network.run` returns: the virtual time it stopped at, the seed, and
    each host's outcome, in the order the hosts were added."""

    time: float
    seed: int
    hosts: dict[str, HostOutcome]

    def __getitem__(self, name: str) -> HostOutcome:
        return self.hosts[name]

    def errors(self) -> dict[str, BaseException]:
        """The exceptions hosts' ``main`` raised, by host name."""
        return {n: h.error for n, h in self.hosts.items() if h.error is not None}

    @property
    def ok(self) -> bool:
        """No host's ``main`` raised."""
        return not self.errors()


@dataclass(slots=True)
class _Host:
    name: str
    ip: Addr
    main: Main | None
    link: LinkParams
    ip6: Addr6 | None
    vif: VnetIf | None = None
    stack: DirectStackV4 | None = None


class _PlanResolver:
    """Names from the network's address plan, answered inside the simulation (the
    resolver interface :func:`miragekit.aio.bind` takes). IPv6 addresses come first for
    a host that has IPv6 itself, and are not offered to one that has not."""

    def __init__(self, net: Network, asker: _Host) -> None:
        self._net = net
        self._v6 = asker.ip6 is not None

    def current_servers(self) -> list[str]:
        return ["the address plan"]

    async def getaddrinfo(
        self, host: str, port: int | str | None, family: int = 0, type: int = 0, proto: int = 0
    ) -> list[tuple[int, int, int, str, tuple[Any, ...]]]:
        from ..dns._addrinfo import addrinfo

        h = self._net._hosts.get(host.lower().rstrip("."))
        if h is None:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: no such host in the simulation")
        addrs: list[Addr | Addr6] = []
        if h.ip6 is not None and self._v6 and family in (0, socket.AF_INET6):
            addrs.append(h.ip6)
        if family in (0, socket.AF_INET):
            addrs.append(h.ip)
        if not addrs:
            raise socket.gaierror(socket.EAI_ADDRFAMILY, f"{host}: no address of that family")
        return addrinfo(addrs, port, type, proto)


_loop_class: type[SimLoop] | None = None


def _network_loop_class() -> type[SimLoop]:
    """:class:`SimLoop` with the network methods routed through the bound stack (made on
    first use: the stack modules import this package)."""
    global _loop_class
    if _loop_class is None:
        from ..netloop import StackLoopMixin

        class NetworkLoop(StackLoopMixin, SimLoop):  # type: ignore[misc]
            """Virtual time; sockets through the calling host's stack."""

        _loop_class = NetworkLoop
    return _loop_class


class Network:
    """One simulated Ethernet segment of named hosts (see the module's docstring).

    ``seed`` decides every random choice (impairments, ports, sequence numbers);
    ``subnet`` (and ``subnet6`` for hosts with ``ip6=True``) is where addresses come from;
    ``link`` is every host's default :class:`~miragekit.link.LinkParams`.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        subnet: str = "10.0.0.0/24",
        subnet6: str = "fd6d:6b00::/64",
        link: LinkParams | None = None,
        idle_timeout: float | EllipsisType | None = ...,
    ) -> None:
        from ..link import LinkParams

        try:
            self.subnet = ipaddress.IPv4Network(subnet)
            self.subnet6 = ipaddress.IPv6Network(subnet6)
        except ValueError as e:
            raise ValueError(f"Network: {e}") from None
        if self.subnet.num_addresses < 4:
            raise ValueError(f"Network: subnet {subnet} has no room for hosts")
        if link is not None and not isinstance(link, LinkParams):
            raise TypeError(f"Network: link must be a LinkParams, got {link!r}")
        self.seed = seed
        self._link = link if link is not None else LinkParams()
        self._idle_timeout = DEFAULT_IDLE_TIMEOUT if idle_timeout is ... else idle_timeout
        self._hosts: dict[str, _Host] = {}
        self._by_ip: dict[Addr, str] = {}
        self._state: Literal["plan", "running", "done"] = "plan"
        self._switch: VnetSwitch | None = None

    # --- the plan ------------------------------------------------------------------------

    def host(
        self,
        name: str,
        main: Main | None = None,
        *,
        ip: str | Addr | None = None,
        ip6: bool = False,
        link: LinkParams | None = None,
    ) -> Addr:
        """Add host ``name`` running ``main()`` (an async function; ``None``: a host that
        only answers at the IP level). Its address is ``ip`` or the next free one of the
        subnet; it is returned. ``ip6=True`` adds an IPv6 address from ``subnet6``."""
        from ..link import LinkParams

        if self._state != "plan":
            raise RuntimeError(f"host {name!r}: hosts are added before run()")
        if not isinstance(name, str) or not _NAME.match(name.lower()):
            raise ValueError(
                f"host name {name!r}: use letters, digits and inner hyphens (at most 63)"
            )
        key = name.lower()
        if key in self._hosts or key == "localhost":
            raise ValueError(f"host {name!r} already exists")
        if main is not None and not callable(main):
            raise TypeError(f"host {name!r}: main must be an async function, got {main!r}")
        if link is not None and not isinstance(link, LinkParams):
            raise TypeError(f"host {name!r}: link must be a LinkParams, got {link!r}")
        addr = self._pick(name, ip)
        index = len(self._hosts) + 1
        addr6 = self.subnet6.network_address + index if ip6 else None
        params = dataclasses.replace(link if link is not None else self._link)
        self._hosts[key] = _Host(name, addr, main, params, addr6)
        self._by_ip[addr] = name
        return addr

    def _pick(self, name: str, ip: str | Addr | None) -> Addr:
        usable = list(self.subnet.hosts())
        if ip is None:
            for a in usable:
                if a not in self._by_ip:
                    return a
            raise ValueError(f"host {name!r}: no free address left in {self.subnet}")
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            raise ValueError(f"host {name!r}: {ip!r} is not an IPv4 address") from None
        if addr not in self.subnet or addr in (
            self.subnet.network_address,
            self.subnet.broadcast_address,
        ):
            raise ValueError(f"host {name!r}: {addr} is not a host address of {self.subnet}")
        other = self._by_ip.get(addr)
        if other is not None:
            raise ValueError(f"host {name!r}: {addr} is already the address of host {other!r}")
        return addr

    def _host(self, name: str) -> _Host:
        h = self._hosts.get(name.lower()) if isinstance(name, str) else None
        if h is None:
            known = ", ".join(h.name for h in self._hosts.values()) or "none"
            raise ValueError(f"no host named {name!r} (hosts: {known})")
        return h

    def address(self, name: str) -> Addr:
        """Host ``name``'s IPv4 address."""
        return self._host(name).ip

    def link(self, name: str, **params: Any) -> None:
        """Set ``LinkParams`` fields of the link between host ``name`` and the switch
        (``latency=0.005, loss=0.01``); at run time too, for frames sent afterwards."""
        from ..link import LinkParams

        h = self._host(name)
        known = {f.name for f in dataclasses.fields(LinkParams) if f.init}
        for k in params:
            if k not in known:
                raise ValueError(f"link {name!r}: no parameter {k!r} (known: {sorted(known)})")
        target = h.vif.link if h.vif is not None else h.link
        dataclasses.replace(target, **params)  # checks every value before anything changes
        for k, v in params.items():
            setattr(target, k, v)

    def stack(self, name: str) -> DirectStackV4:
        """Host ``name``'s stack, while the network runs."""
        h = self._host(name)
        if h.stack is None:
            raise RuntimeError(f"host {name!r} has no stack: the network is not running")
        return h.stack

    @property
    def switch(self) -> VnetSwitch:
        """The segment's switch, while the network runs (partitions, mirror ports)."""
        if self._switch is None:
            raise RuntimeError("the network is not running")
        return self._switch

    # --- running -------------------------------------------------------------------------

    def run(self, until: float | None = None) -> Report:
        """Start every host and run their ``main``s until all have ended or the virtual
        clock reaches ``until`` seconds; then stop everything and report."""
        if self._state != "plan":
            raise RuntimeError("run: a Network runs once; build a new one for another run")
        if until is not None and (isinstance(until, bool) or not until > 0):
            raise ValueError(f"run: until must be > 0 seconds or None, got {until!r}")
        if not self._hosts:
            raise ValueError("run: the network has no hosts (add them with host())")
        self._state = "running"
        loop = _network_loop_class()(seed=self.seed, idle_timeout=self._idle_timeout)
        try:
            return run_on(loop, self._main(until))
        finally:
            self._state = "done"
            self._switch = None
            for h in self._hosts.values():
                h.stack = None
                h.vif = None

    async def _start(self) -> None:
        from .. import v1
        from ..link import VnetSwitch
        from ..result import Error
        from ..stack import DirectStackV4, IPv6Config, Static

        sw = self._switch = VnetSwitch(seed=self.seed)
        prefix = self.subnet.prefixlen
        for h in self._hosts.values():
            h.vif = sw.add_interface(h.name, link=h.link)
        for h in self._hosts.values():
            assert h.vif is not None
            ip6 = None
            if h.ip6 is not None:
                ip6 = IPv6Config(cidrs=[f"{h.ip6}/{self.subnet6.prefixlen}"], slaac=False)
            r = await DirectStackV4.connect(
                v1.StackConfig(h.name, None, h.vif, Static(f"{h.ip}/{prefix}")), ip6=ip6
            )
            if isinstance(r, Error):
                raise RuntimeError(f"host {h.name!r}: its stack did not start: {r.error}")
            h.stack = r.value

    async def _main(self, until: float | None) -> Report:
        from ..netloop import bind

        loop = asyncio.get_running_loop()
        await self._start()
        tasks: dict[str, asyncio.Task[object]] = {}
        for h in self._hosts.values():
            if h.main is not None:
                assert h.stack is not None
                with bind(h.stack, resolver=_PlanResolver(self, h)):
                    tasks[h.name] = loop.create_task(_call(h.main), name=h.name)
        left = None if until is None else until - loop.time()
        if tasks and (left is None or left > 0):
            await asyncio.wait(list(tasks.values()), timeout=left)
        elif left is not None and left > 0:
            await asyncio.sleep(left)
        outcomes: dict[str, HostOutcome] = {}
        for h in self._hosts.values():
            t = tasks.get(h.name)
            if t is None:
                outcomes[h.name] = HostOutcome(h.name, h.ip, "idle")
            elif not t.done():
                outcomes[h.name] = HostOutcome(h.name, h.ip, "running")
            elif t.cancelled():
                outcomes[h.name] = HostOutcome(
                    h.name, h.ip, "raised", None, asyncio.CancelledError()
                )
            elif t.exception() is not None:
                outcomes[h.name] = HostOutcome(h.name, h.ip, "raised", None, t.exception())
            else:
                outcomes[h.name] = HostOutcome(h.name, h.ip, "returned", t.result())
        return Report(loop.time(), self.seed, outcomes)


async def _call(main: Main) -> object:
    return await main()
