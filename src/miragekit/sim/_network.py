"""A simulated cluster: named hosts on one switch, each running unmodified asyncio code.

Why: a distributed service is tested by running its real code on several hosts under
loss, delay and partitions, and replaying a failure from its seed. :class:`Network` puts
an address plan and names over :class:`~miragekit.link.VnetSwitch` and
:class:`~miragekit.stack.DirectStackV4`: every host gets its own stack, its ``main`` runs
bound to it (``asyncio.open_connection("db", 5432)`` goes through that stack, and "db"
resolves from the plan, inside the simulation), on one virtual-time loop.

Faults (:meth:`Network.partition`, :meth:`~Network.block`, :meth:`~Network.heal`,
:meth:`~Network.crash`, :meth:`~Network.restart`, :meth:`~Network.link`) apply at once
while the network runs, or at a virtual time given with ``at=``. A crashed host vanishes
between two events: its interface is unplugged first, so nothing it does afterwards
(not even a FIN or RST) leaves, then its tasks are cancelled. Which tasks are a host's:
those created in a context with its stack bound (its ``main`` and what it starts, its
servers' handlers); the switch delivers frames in an empty context, so what a stack
starts for a peer's packet is never counted as the peer's.

The plan is checked while it is written (unknown or duplicate names, addresses outside
the subnet or taken, unknown link parameters), so a mistake is one clear error before
anything runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import dataclasses
import inspect
import ipaddress
import os
import re
import socket
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Literal, cast

from ..clock import Clock
from . import _hugepages
from ._escape import Escape, EscapeWatch, SimEscape
from ._loop import DEFAULT_IDLE_TIMEOUT, SimDeadlock, SimLoop, _TaskNote, run_on
from ._observe import Event, HostCounters, HostObserver, format_events

if TYPE_CHECKING:
    from ..link import LinkParams, PcapWriter, VnetIf, VnetSwitch
    from ..stack import DirectStackV4
    from ._hostport import HostPort
    from ._replay import Determinism

Main = Callable[[], Awaitable[object]]
"""A host's program: an async function of no arguments."""

Addr = ipaddress.IPv4Address
Addr6 = ipaddress.IPv6Address
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class HostOutcome:
    """How one host's last ``main`` ended: ``state`` is "returned" (``value``), "raised"
    (``error``), "running" (still going at ``until``), "crashed" (and not restarted) or
    "idle" (no ``main``); ``restarts`` counts :meth:`Network.restart`."""

    name: str
    ip: Addr
    state: Literal["returned", "raised", "running", "crashed", "idle"]
    value: object = None
    error: BaseException | None = None
    restarts: int = 0
    counters: HostCounters = field(default_factory=HostCounters)
    """The host's traffic over the whole run (see :class:`HostCounters`)."""


@dataclass(frozen=True, slots=True)
class Report:
    """What :meth:`Network.run` returns: the virtual time it stopped at, the seed, and
    each host's outcome, in the order the hosts were added."""

    time: float
    seed: int
    hosts: dict[str, HostOutcome]
    events: list[Event] = field(default_factory=list)
    """What happened, in order: hosts started and ended, faults applied, TCP connections
    opened, closed and reset (see :meth:`format_events`)."""
    escapes: list[Escape] = field(default_factory=list)
    """Code that escaped the simulation (threads, real sockets, the host's clock)."""

    def format_events(self) -> str:
        """The event log as text, one ``time text`` line per event."""
        return format_events(self.events)

    def __getitem__(self, name: str) -> HostOutcome:
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.hosts)
            raise KeyError(f"no host named {name!r} in the report (hosts: {known})") from None

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
    pcap: str | None = None
    skew: float = 0.0
    drift: float = 0.0
    vif: VnetIf | None = None
    port: HostPort | None = None
    observer: HostObserver | None = None
    stack: DirectStackV4 | None = None
    task: asyncio.Task[object] | None = None
    crashed: bool = False
    restarts: int = 0


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
        h = self._net._hosts.get(host.lower().rstrip("."))
        if h is None:
            names = list(self._net._hosts)
            known = ", ".join(names[:10]) + (
                f" and {len(names) - 10} more" if len(names) > 10 else ""
            )
            raise socket.gaierror(
                socket.EAI_NONAME, f"{host}: no such host in the simulation (hosts: {known})"
            )
        addrs: list[Addr | Addr6] = []
        if h.ip6 is not None and self._v6 and family in (0, socket.AF_INET6):
            addrs.append(h.ip6)
        if family in (0, socket.AF_INET):
            addrs.append(h.ip)
        if not addrs:
            raise socket.gaierror(socket.EAI_ADDRFAMILY, f"{host}: no address of that family")
        # The loop answers numeric addresses itself (no resolver, no dnspython).
        loop = asyncio.get_running_loop()
        out: list[tuple[int, int, int, str, tuple[Any, ...]]] = []
        for a in addrs:
            out.extend(await loop.getaddrinfo(str(a), port, type=type, proto=proto))
        return out


class _Owners:
    """The host each task runs for, by task, kept in the loop's own weak map of tasks
    (``SimLoop._task_notes``): a second weak map would cost a weak reference per task."""

    __slots__ = ("_notes",)

    def __init__(self, notes: weakref.WeakKeyDictionary[asyncio.Task[Any], _TaskNote]):
        self._notes = notes

    def get(self, task: asyncio.Task[Any]) -> str | None:
        note = self._notes.get(task)
        return None if note is None else note.host

    def __setitem__(self, task: asyncio.Task[Any], host: str) -> None:
        note = self._notes.get(task)
        if note is None:  # a task the loop's factory did not make: no rank
            self._notes[task] = _TaskNote(-1, host)
        else:
            note.host = host


_loop_class: type[SimLoop] | None = None


def _network_loop_class() -> type[SimLoop]:
    """:class:`SimLoop` with the network methods routed through the bound stack (made on
    first use: the stack modules import this package)."""
    global _loop_class
    if _loop_class is None:
        from ..netloop import StackLoopMixin, _names, bound_resolver, bound_stack, stack_for

        class NetworkLoop(StackLoopMixin, SimLoop):  # type: ignore[misc]
            """Virtual time; sockets through the calling host's stack; each task
            remembers its host (see the module's docstring)."""

            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.owner = _Owners(self._task_notes)
                self.hosts_by_stack: dict[int, str] = {}
                self.plan_resolvers: dict[int, _PlanResolver] = {}  # id(stack): its host's
                self.clocks: dict[str, tuple[float, float]] = {}  # host: (skew s, drift ppm)

            def current_host(self) -> str | None:
                """The host whose code is running: its stack is bound, or the task is
                one of its own."""
                stack = bound_stack()
                if stack is not None:
                    return self.hosts_by_stack.get(id(stack))
                task = asyncio.current_task(self)
                return None if task is None else self.owner.get(task)

            def wall_time(self) -> float:
                """The simulated wall clock as the running host sees it (its skew)."""
                host = self.current_host()
                return SimLoop.wall_time(self) if host is None else self.host_wall_time(host)

            def host_wall_time(self, host: str) -> float:
                """Host ``host``'s clock: the simulated wall clock, offset by its
                ``clock_skew`` and running ``drift`` ppm fast (slow if negative)."""
                skew, drift = self.clocks.get(host, (0.0, 0.0))
                return SimLoop.wall_time(self) + skew + self.time() * drift * 1e-6

            async def _stack_for(self, call: str) -> Any:
                if bound_stack() is None:
                    raise RuntimeError(
                        f"{call}: this code runs as no host of the simulated network (an "
                        "at() action, or code outside every host's main): make the call "
                        "from a host's main, or bind a host's stack around it "
                        "(with miragekit.aio.bind(net.stack(name)): ...)"
                    )
                return stack_for(call)

            async def _resolve(
                self,
                stack: Any,
                host: Any,
                port: Any,
                family: int,
                type: int,
                proto: int,
                flags: int,
            ) -> list[_names.AddrInfo]:
                # A host's stack bound by the test's own code resolves from the plan too.
                plan = self.plan_resolvers.get(id(stack))
                if plan is None or bound_resolver() is not None:
                    return await super()._resolve(stack, host, port, family, type, proto, flags)
                return await _names.resolve(plan, host, port, family, type, proto, flags)

            def call_exception_handler(self, context: dict[str, Any]) -> None:
                # Python 3.11's start_server asks a cancelled handler task for its
                # exception(), which raises CancelledError inside a callback (3.12 fixed
                # it): a crash cancels handlers, and that is not an error.
                if isinstance(context.get("exception"), asyncio.CancelledError):
                    return
                super().call_exception_handler(context)

            def _task_host(self, kwargs: dict[str, Any]) -> str | None:
                ctx: contextvars.Context | None = kwargs.get("context")
                stack = bound_stack() if ctx is None else ctx.run(bound_stack)
                return None if stack is None else self.hosts_by_stack.get(id(stack))

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
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"Network: seed must be an int, got {seed!r}")
        self.seed = seed
        self._link = link if link is not None else LinkParams()
        self._idle_timeout = DEFAULT_IDLE_TIMEOUT if idle_timeout is ... else idle_timeout
        self._hosts: dict[str, _Host] = {}
        self._by_ip: dict[Addr, str] = {}
        self._state: Literal["plan", "running", "done"] = "plan"
        self._switch: VnetSwitch | None = None
        self._scheduled: list[tuple[float, Callable[[], None]]] = []
        self._pending = 0  # scheduled actions not run yet
        self._booting = 0  # restarts under way
        self._events: list[Event] = []
        self._changed: asyncio.Event | None = None
        self._cleanups: list[asyncio.Future[Any]] = []
        self._action_error: BaseException | None = None  # the first an action raised
        self._capture: str | None = None
        self._watch: EscapeWatch | None = None
        self._report: Report | None = None
        # Set (by check_determinism and the pytest plugin): every capture goes there.
        self._capture_dir: str | None = None
        self._capture_files: dict[str, str] = {}
        # Faults and actions scheduled before run(), as calls (method, args, at): what
        # check_determinism replays on a fresh network.
        self._plan_calls: list[tuple[str, tuple[Any, ...], float]] = []

    # --- the plan ------------------------------------------------------------------------

    def host(
        self,
        name: str,
        main: Main | None = None,
        *,
        ip: str | Addr | None = None,
        ip6: bool = False,
        link: LinkParams | None = None,
        pcap: str | os.PathLike[str] | None = None,
        clock_skew: float = 0.0,
        drift: float = 0.0,
    ) -> Addr:
        """Add host ``name`` running ``main()`` (an async function; ``None``: a host that
        only answers at the IP level). Its address is ``ip`` or the next free one of the
        subnet; it is returned. ``ip6=True`` adds an IPv6 address from ``subnet6``.
        ``pcap`` records what the host sends and receives (across restarts) in that
        file. ``clock_skew`` (seconds) and ``drift`` (ppm) offset the host's wall clock
        (:func:`miragekit.sim.clock` in its code, :meth:`clock`); loop time stays shared."""
        from ..link import LinkParams

        if self._state != "plan":
            when = "while the network runs" if self._state == "running" else "after run()"
            raise RuntimeError(
                f"host {name!r}: cannot be added {when}; hosts are added before run()"
            )
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
        for what, v in (("clock_skew", clock_skew), ("drift", drift)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not abs(v) < 1e9:
                raise ValueError(f"host {name!r}: {what} must be a number of seconds, got {v!r}")
        if not -1e6 < drift < 1e6:
            raise ValueError(f"host {name!r}: drift must be within +-1e6 ppm, got {drift!r}")
        path = self._pcap_path(f"host {name!r}", pcap)
        addr = self._pick(name, ip)
        index = len(self._hosts) + 1
        addr6 = self.subnet6.network_address + index if ip6 else None
        params = dataclasses.replace(link if link is not None else self._link)
        h = _Host(name, addr, main, params, addr6, path, float(clock_skew), float(drift))
        self._hosts[key] = h
        self._by_ip[addr] = name
        return addr

    def _pcap_path(
        self,
        what: str,
        pcap: str | os.PathLike[str] | None,
        owner: _Host | None = None,
        *,
        segment: bool = False,
    ) -> str | None:
        """``pcap`` as a path, checked: its directory exists and no other capture writes
        it (other than host ``owner``'s own, or the segment's when ``segment``)."""
        if pcap is None:
            return None
        if not isinstance(pcap, str | os.PathLike) or not os.fspath(pcap):
            raise TypeError(f"{what}: pcap must be a file path, got {pcap!r}")
        path = os.fspath(pcap)
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise ValueError(f"{what}: cannot write {path!r}: there is no directory {folder!r}")
        taken = [h.name for h in self._hosts.values() if h.pcap == path and h is not owner]
        if taken or (path == self._capture and not segment):
            other = f"host {taken[0]!r}" if taken else "the segment"
            raise ValueError(f"{what}: {path!r} is already the capture of {other}")
        return path

    def _pick(self, name: str, ip: str | Addr | None) -> Addr:
        if ip is None:
            n = int(self.subnet.network_address) + 1
            last = int(self.subnet.broadcast_address) - 1
            while n <= last and ipaddress.IPv4Address(n) in self._by_ip:
                n += 1
            if n > last:
                raise ValueError(f"host {name!r}: no free address left in {self.subnet}")
            return ipaddress.IPv4Address(n)
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

    def capture(self, path: str | os.PathLike[str], *, host: str | None = None) -> None:
        """Record every frame any host sends into the segment, across partitions, in a
        pcap file (a mirror port of the switch): same seed, byte-identical file. With
        ``host``, what that host sends and receives, as ``host(..., pcap=path)``."""
        if self._state != "plan":
            raise RuntimeError("capture: set it up before run()")
        if host is not None:
            h = self._host(host)
            h.pcap = self._pcap_path(f"capture of host {h.name!r}", path, h)
            return
        self._capture = self._pcap_path("capture", path, segment=True)

    @property
    def report(self) -> Report | None:
        """What :meth:`run` returned, once it has."""
        return self._report

    def _redirect_captures(self, into: str) -> None:
        """Write every capture under ``into`` (the segment's too, made if not asked for),
        and remember which file holds what (``_capture_files``)."""
        self._capture = os.path.join(into, "segment.pcap")
        self._capture_files = {"the segment": self._capture}
        for h in self._hosts.values():
            if h.pcap is not None:
                h.pcap = os.path.join(into, f"host-{h.name}.pcap")
                self._capture_files[f"host {h.name}"] = h.pcap

    @property
    def events(self) -> list[Event]:
        """The event log so far (a copy): ``(time, text)`` pairs, see :meth:`Report.format_events`."""
        return list(self._events)

    def clock(self, name: str) -> Clock:
        """Host ``name``'s CLOCK (its skew and drift applied), while the network runs."""
        h = self._host(name)
        if self._state != "running":
            raise RuntimeError(f"clock {name!r}: the network is not running")
        loop = asyncio.get_running_loop()
        return Clock(lambda: cast(Any, loop).host_wall_time(h.name))

    # --- faults --------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], object]) -> None:
        """Call ``action()`` at virtual time ``when`` (an async function's coroutine is
        run as a task), e.g. ``net.at(30, lambda: net.link("db", loss=0.2))``."""
        if not callable(action):
            raise TypeError(f"at: action must be callable, got {action!r}")
        self._at(when, "at", action, ("at", (action,)))

    def partition(self, *groups: Iterable[str], at: float | None = None) -> None:
        """Split the segment: frames pass only between hosts of the same group (hosts in
        no group form one more group). Replaces an earlier partition."""
        sets = [[self._host(n).name for n in _names(g, "partition")] for g in groups]
        seen: dict[str, int] = {}
        for i, g in enumerate(sets):
            for n in g:
                if seen.get(n, i) != i:
                    raise ValueError(f"partition: host {n!r} is in two groups")
                seen[n] = i
        text = "partition " + " | ".join(",".join(g) for g in sets)
        self._fault(at, text, lambda: self.switch.partition(*sets), ("partition", tuple(sets)))

    def block(self, src: str, dst: str, *, at: float | None = None) -> None:
        """A one-way partition: frames from ``src`` no longer reach ``dst``."""
        a, b = self._host(src).name, self._host(dst).name
        self._fault(at, f"block {a} -> {b}", lambda: self.switch.block(a, b), ("block", (a, b)))

    def heal(self, *, at: float | None = None) -> None:
        """Remove the partition and every one-way block."""
        self._fault(at, "heal", lambda: self.switch.heal(), ("heal", ()))

    def crash(self, name: str, *, at: float | None = None) -> None:
        """Host ``name`` vanishes: its interface is unplugged (nothing more leaves, not
        even FIN or RST; frames for it are lost), then its tasks are cancelled."""
        h = self._host(name)
        self._fault(at, f"crash {h.name}", lambda: self._crash(h), ("crash", (h.name,)))

    def restart(self, name: str, *, at: float | None = None) -> None:
        """A fresh stack at the same addresses (and MAC) runs host ``name``'s ``main``
        again; a host still up is crashed first. Peers' old connections to it are reset
        when they next send (the new stack knows nothing of them)."""
        h = self._host(name)
        self._fault(at, f"restart {h.name}", lambda: self._restart(h), ("restart", (h.name,)))

    def _fault(
        self,
        at: float | None,
        text: str,
        apply: Callable[[], None],
        call: tuple[str, tuple[Any, ...]],
    ) -> None:
        def run() -> None:
            self._log(text)
            apply()

        if at is None:
            if self._state != "running":
                raise RuntimeError(
                    f"{text.split()[0]}: the network is not running; pass at=seconds to schedule it"
                )
            run()
        else:
            self._at(at, text.split()[0], run, call)

    def _at(
        self,
        when: float,
        what: str,
        action: Callable[[], object],
        call: tuple[str, tuple[Any, ...]],
    ) -> None:
        if isinstance(when, bool) or not isinstance(when, int | float) or not when >= 0:
            raise ValueError(f"{what}: at must be a virtual time >= 0 seconds, got {when!r}")
        if self._state == "done":
            raise RuntimeError(f"{what}: the network has finished running")
        if self._state == "plan":
            self._plan_calls.append((call[0], call[1], float(when)))
        self._pending += 1

        def fire() -> None:
            self._pending -= 1
            try:
                out = action()
                if inspect.isawaitable(out):
                    task = asyncio.ensure_future(out)
                    self._cleanups.append(task)
                    task.add_done_callback(lambda t: self._action_done(what, when, t))
            except Exception as e:
                self._action_failed(what, when, e)
            finally:
                self._wake()

        if self._state == "running":
            asyncio.get_running_loop().call_at(when, fire)
        else:
            self._scheduled.append((float(when), fire))

    def _action_done(self, what: str, when: float, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._action_failed(what, when, cast(BaseException, task.exception()))
        self._wake()

    def _action_failed(self, what: str, when: float, e: BaseException) -> None:
        """An action scheduled with ``at`` raised: the run stops and :meth:`run` raises
        it (the test's own code failed: not a host's outcome to report)."""
        if self._action_error is None:
            call = f"at({when:g}, ...)" if what == "at" else f"{what}(..., at={when:g})"
            self._log(f"{call} raised {type(e).__name__}")
            t = asyncio.get_running_loop().time()
            e.add_note(f"raised by the simulated network's {call}, at t={t:.6f}")
            self._action_error = e

    def _crash(self, h: _Host) -> None:
        if h.crashed or h.vif is None:
            return
        h.crashed = True
        h.vif.unplug()
        if h.port is not None:
            h.port.dead()
        if h.observer is not None:
            h.observer.gone()
        self._log(f"{h.name} gone")
        loop = asyncio.get_running_loop()
        owner = getattr(loop, "owner", {})
        for t in cast(SimLoop, loop).tasks_in_creation_order():
            if owner.get(t) == h.name:
                t.cancel()
        stack = h.stack
        h.stack = None
        if stack is not None:
            if h.observer is not None:
                h.observer.add_stack(stack.counters())
            # Stop the dead stack's timers; all it sends now is dropped at the unplugged port.
            cleanup = loop.create_task(stack.disconnect())
            self._cleanups.append(cleanup)
        self._wake()

    def _restart(self, h: _Host) -> None:
        self._crash(h)
        h.restarts += 1
        self._booting += 1
        task = asyncio.get_running_loop().create_task(self._boot(h))
        self._cleanups.append(task)

    async def _boot(self, h: _Host) -> None:
        try:
            if h.vif is not None and not h.vif.connected:
                mac, link = h.vif.mac(), h.vif.link
                if h.observer is not None:
                    h.observer.add_drops(h.vif.counters)
                h.vif = self.switch.add_interface(h.name, mac=mac, link=link)
                await asyncio.sleep(0)
            await self._up(h)
            h.crashed = False
            self._start_main(h)
        finally:
            self._booting -= 1
            self._wake()

    def _log(self, text: str) -> None:
        if self._state == "running":  # not what the teardown after the report does
            self._events.append(Event(asyncio.get_running_loop().time(), text))

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # --- running -------------------------------------------------------------------------

    def run(self, until: float | None = None, *, strict: bool = False) -> Report:
        """Start every host and run their ``main``s until all have ended (and nothing is
        scheduled) or the virtual clock reaches ``until`` seconds; then stop everything
        and report. Code that escaped the simulation is listed in ``Report.escapes``;
        ``strict=True`` raises :class:`SimEscape` instead of returning such a report."""
        if self._state != "plan":
            raise RuntimeError("run: a Network runs once; build a new one for another run")
        if until is not None and (
            isinstance(until, bool) or not isinstance(until, int | float) or not until > 0
        ):
            raise ValueError(f"run: until must be > 0 seconds or None, got {until!r}")
        if not self._hosts:
            raise ValueError("run: the network has no hosts (add them with host())")
        _hugepages.wanted_by_environment()  # a bad MIRAGEKIT_HUGE_PAGES, before anything
        if self._capture_dir is not None:
            os.makedirs(self._capture_dir, exist_ok=True)
            self._redirect_captures(self._capture_dir)
        self._state = "running"
        loop = _network_loop_class()(seed=self.seed, idle_timeout=self._idle_timeout)
        for h in self._hosts.values():
            if h.skew or h.drift:
                cast(Any, loop).clocks[h.name] = (h.skew, h.drift)
        self._watch = EscapeWatch(lambda: (cast(Any, loop).current_host(), loop.time()))
        try:
            report = run_on(loop, self._main(until))
        except SimDeadlock as e:
            if until is not None:
                raise
            # The common case: a server's main waits for ever once its clients are done.
            raise SimDeadlock(
                f"{e}; the hosts in brackets are still in their main: one that serves for "
                "ever needs run(until=SECONDS), which ends the run at that virtual time"
            ) from None
        finally:
            self._state = "done"
            self._switch = None
            self._changed = None
            for h in self._hosts.values():
                h.stack = None
                h.vif = None
                h.port = None
                h.task = None
        self._report = report
        if strict and report.escapes:
            lines = "".join(f"\n  {e}" for e in report.escapes)
            raise SimEscape(f"code escaped the simulation:{lines}")
        return report

    def check_determinism(
        self, until: float | None = None, *, keep: str | os.PathLike[str] | None = None
    ) -> Determinism:
        """Run this network and a fresh replica of its plan (same seed, hosts, links,
        captures and scheduled faults) up to ``until``, and name the first difference, as
        :func:`miragekit.sim.check_determinism` does. Call it instead of :meth:`run`;
        ``net.report`` is then the first run's. The hosts' programs and ``at`` actions
        are deep-copied before the first run, for the second; one that refers to this
        network is refused (the replica cannot act on itself through it)."""
        from ._replay import check_network

        return check_network(self, until, keep)

    async def _up(self, h: _Host) -> None:
        from .. import v1
        from ..result import Error
        from ..stack import DirectStackV4, IPv6Config, Static
        from ._hostport import HostPort

        assert h.vif is not None
        ip6 = None
        if h.ip6 is not None:
            ip6 = IPv6Config(cidrs=[f"{h.ip6}/{self.subnet6.prefixlen}"], slaac=False)
        mode = Static(f"{h.ip}/{self.subnet.prefixlen}")
        assert h.observer is not None
        port = HostPort(h.vif, h.observer)
        r = await DirectStackV4.connect(v1.StackConfig(h.name, None, port, mode), ip6=ip6)
        if isinstance(r, Error):
            raise RuntimeError(f"host {h.name!r}: its stack did not start: {r.error}")
        h.stack = r.value
        h.port = port
        loop = asyncio.get_running_loop()
        getattr(loop, "hosts_by_stack", {})[id(r.value)] = h.name
        getattr(loop, "plan_resolvers", {})[id(r.value)] = _PlanResolver(self, h)

    def _start_main(self, h: _Host) -> None:
        from ..netloop import bind

        if h.main is None or h.stack is None:
            return
        loop = asyncio.get_running_loop()
        with bind(h.stack, resolver=_PlanResolver(self, h)):
            h.task = loop.create_task(_call(h.main, h.name), name=h.name)
        getattr(loop, "owner", {})[h.task] = h.name
        h.task.add_done_callback(lambda t: self._ended(h, t))
        self._log(f"start {h.name}" if not h.restarts else f"start {h.name} again")

    def _ended(self, h: _Host, task: asyncio.Task[object]) -> None:
        if task.cancelled():
            if not h.crashed and task is h.task:  # a crash logs its own "gone"
                self._log(f"{h.name} cancelled")
        elif task.exception() is not None:
            self._log(f"{h.name} raised {type(task.exception()).__name__}")
        else:
            self._log(f"{h.name} returned")
        self._wake()

    def _busy(self) -> bool:
        if self._action_error is not None:
            return False
        return (
            self._pending > 0
            or self._booting > 0
            or any(h.task is not None and not h.task.done() for h in self._hosts.values())
        )

    async def _main(self, until: float | None) -> Report:
        from ..link import PcapNetif, PcapWriter, VnetSwitch

        self._changed = asyncio.Event()
        self._switch = VnetSwitch(seed=self.seed)
        names: dict[bytes, str] = {}
        for h in self._hosts.values():
            names[h.ip.packed] = h.name
            if h.ip6 is not None:
                names[h.ip6.packed] = h.name
        writers: list[PcapWriter] = []
        cap = None
        watch = self._watch
        try:
            for h in self._hosts.values():
                h.vif = self._switch.add_interface(h.name, link=h.link)
                w = None
                if h.pcap is not None:
                    w = PcapWriter(h.pcap)
                    writers.append(w)
                h.observer = HostObserver(h.name, self._log, names, w)
            if self._capture is not None:
                mirror = self._switch.add_interface("-capture", mirror=True)
                cap = PcapNetif(mirror, self._capture)
                cap.set_receiver(lambda frame: None)
            if watch is not None:
                watch.start()
            return await self._drive(until)
        finally:
            if watch is not None:
                watch.stop()
            for h in self._hosts.values():
                if h.port is not None:
                    h.port.dead()  # what the teardown sends is not part of the run
            for w in writers:
                w.close()
            if cap is not None:
                await cap.disconnect()

    async def _drive(self, until: float | None) -> Report:
        loop = asyncio.get_running_loop()
        changed = self._changed
        assert changed is not None
        for h in self._hosts.values():
            if h.ip6 is None:  # up at once, in plan order
                await self._up(h)
        # IPv6 stacks wait for duplicate address detection (a second or two): all at once,
        # not one after the other (ten hosts started their mains at 16 s).
        await asyncio.gather(*(self._up(h) for h in self._hosts.values() if h.ip6 is not None))
        for when, fire in self._scheduled:
            loop.call_at(when, fire)
        self._scheduled.clear()
        for h in self._hosts.values():
            self._start_main(h)
        while self._busy():
            left = None if until is None else until - loop.time()
            if left is not None and left <= 0:
                break
            changed.clear()
            try:
                async with asyncio.timeout(left):
                    await changed.wait()
            except TimeoutError:
                break
        self._state = "done"
        if self._watch is not None:
            self._watch.stop()
        if self._action_error is not None:
            raise self._action_error
        escapes = self._watch.escapes if self._watch is not None else []
        return Report(loop.time(), self.seed, self._outcomes(), list(self._events), escapes)

    def _counters(self, h: _Host) -> HostCounters:
        """The host's counters now, folded with its live port's and stack's (a copy)."""
        obs = h.observer
        if obs is None:
            return HostCounters()
        saved = copy.deepcopy(obs.counters)
        if h.vif is not None:
            obs.add_drops(h.vif.counters)
        if h.stack is not None:
            obs.add_stack(h.stack.counters())
        now, obs.counters = obs.counters, saved
        return now

    def _outcomes(self) -> dict[str, HostOutcome]:
        out: dict[str, HostOutcome] = {}
        for h in self._hosts.values():
            t, n, c, r = h.task, h.name, self._counters(h), h.restarts
            if h.crashed:
                out[n] = HostOutcome(n, h.ip, "crashed", restarts=r, counters=c)
            elif t is None:
                out[n] = HostOutcome(n, h.ip, "idle", restarts=r, counters=c)
            elif not t.done():
                out[n] = HostOutcome(n, h.ip, "running", restarts=r, counters=c)
            elif t.cancelled():
                err = asyncio.CancelledError()
                out[n] = HostOutcome(n, h.ip, "raised", None, err, r, c)
            elif t.exception() is not None:
                out[n] = HostOutcome(n, h.ip, "raised", None, t.exception(), r, c)
            else:
                out[n] = HostOutcome(n, h.ip, "returned", t.result(), None, r, c)
        return out


def _names(group: Iterable[str], what: str) -> list[str]:
    if isinstance(group, str):
        raise TypeError(f"{what}: each group is a collection of host names, got {group!r}")
    return list(group)


async def _call(main: Main, name: str) -> object:
    out = main()
    if not inspect.isawaitable(out):  # a plain function: say so, not "can't be awaited"
        raise TypeError(
            f"host {name!r}: main returned {out!r}, not an awaitable; "
            "main must be an async function (async def)"
        )
    return await out
