"""Building the device graph an application asks for, running it, and tearing it down."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .. import v1
from ._addresses import report as report_addresses
from ._app import App, settings_values
from ._forward import Forwarder, kernel_forwarder, vnet_forwarder
from ._options import Options
from ._providers import Choice, LinkError, choose, signature_name


@dataclass
class Node:
    """One device of the graph: its signature, the backend chosen, and what it needs."""

    signature: type
    choice: Choice
    users: list[str] = field(default_factory=list)


def plan(app: App, opts: Options) -> list[Node]:
    """The devices ``run`` would build for ``app``, dependencies first, without building."""
    nodes: dict[type, Node] = {}

    def visit(sig: type, user: str, stack: tuple[type, ...]) -> None:
        if sig in stack:
            raise LinkError(f"dependency cycle through {signature_name(sig)}")
        if sig not in nodes:
            choice = choose(sig, opts)
            for dep in choice.needs:
                visit(dep, signature_name(sig), (*stack, sig))
            nodes[sig] = Node(sig, choice)
        nodes[sig].users.append(user)

    settings_values(app, opts.settings)  # a misused --set fails here, before any device
    if app.tls_required and opts.tls is None:
        raise LinkError(f"{app.name}: start({app.tls}) takes a TLS context: give --tls CERT,KEY")
    for name, sig in app.params:
        visit(sig, f"start({name})", ())
    if opts.forward:
        if v1.StackV4 not in nodes:
            raise LinkError(
                f"--forward: {app.name} takes no STACKV4, nothing listens to forward to"
            )
        nodes[v1.StackV4].users.append("--forward")
    return list(nodes.values())


def unused_flags(app: App, opts: Options) -> list[str]:
    """One warning per flag for a device the app does not take (``--kv`` for an app
    without KV_RO): likely a mistake, worth a line rather than silence."""
    used = {node.signature for node in plan(app, opts)}
    net = v1.Network in used or v1.StackV4 in used
    out: list[str] = []
    flags: list[tuple[bool, str, str]] = [
        (opts.kv is not None, "--kv", "KV_RO"),
        (opts.block is not None, "--block", "BLOCK or FS"),
        (opts.net != "socket", "--net", "NETWORK or STACKV4"),
        (opts.pcap is not None, "--pcap", "NETWORK or STACKV4"),
        (opts.ip is not None, "--ip", "NETWORK or STACKV4"),
        (opts.gateway is not None, "--gateway", "STACKV4"),
        (bool(opts.ip6), "--ip6", "STACKV4"),
        (opts.dhcp, "--dhcp", "STACKV4"),
        (opts.offload, "--offload", "NETWORK or STACKV4"),
    ]
    for given, flag, wants in flags:
        if not given:
            continue
        if flag == "--kv":
            missing = v1.KVRO not in used
        elif flag == "--block":
            missing = v1.Block not in used
        elif wants == "STACKV4":
            missing = v1.StackV4 not in used
        else:
            missing = not net
        if missing:
            out.append(f"{flag}: {app.name} takes no {wants}; {flag} is ignored")
    if opts.tls is not None and app.tls is None:
        out.append(f"--tls: {app.name} takes no ssl.SSLContext; --tls is ignored")
    return out


def describe_forward(opts: Options, ports: list[int] | None = None) -> list[str]:
    """One line per ``--forward`` rule: where it listens and which way it goes.

    ``ports``: the host ports actually bound, if known (a HOSTPORT of 0 picks one)."""
    if not opts.forward:
        return []
    app_ip = opts.interface().ip
    if opts.net_kind == "vnet":
        via = f"through the host's DirectStackV4 {opts.host_side()} on the VnetSwitch"
    else:
        via = f"through the host kernel and {opts.tap_name}"
    hp = ports if ports is not None else [f.host_port for f in opts.forward]
    return [
        f"127.0.0.1:{h} -> {app_ip}:{f.port}{' (UDP)' if f.proto == 'udp' else ''} {via}"
        for h, f in zip(hp, opts.forward, strict=True)
    ]


def describe_text(app: App, opts: Options) -> str:
    lines = [f"{app.name}: start({', '.join(n for n, _ in app.params)})"]
    for node in plan(app, opts):
        lines.append(f"  {signature_name(node.signature)}: {node.choice.label}")
        for dep in node.choice.needs:
            lines.append(f"    needs {signature_name(dep)}")
        lines.append(f"    used by {', '.join(node.users)}")
    for line in describe_forward(opts):
        lines.append(f"  forward {line}")
    for name, value in settings_values(app, opts.settings).items():
        lines.append(f"  setting {name} = {value!r}")
    if app.tls is not None and opts.tls is not None:
        lines.append(f"  tls {app.tls} = server context from {opts.tls[0]}, {opts.tls[1]}")
    return "\n".join(lines)


def describe_dot(app: App, opts: Options) -> str:
    out = ["digraph miragekit {", "  rankdir=LR;", '  app [shape=box, label="start"];']
    for node in plan(app, opts):
        name = signature_name(node.signature)
        label = f"{name}\\n{node.choice.label}".replace('"', "'")
        out.append(f'  "{name}" [label="{label}"];')
        for dep in node.choice.needs:
            out.append(f'  "{name}" -> "{signature_name(dep)}";')
    for pname, sig in app.params:
        out.append(f'  app -> "{signature_name(sig)}" [label="{pname}"];')
    for i, line in enumerate(describe_forward(opts)):
        out.append(f'  "forward{i}" [shape=cds, label="{line}"];')
        out.append(f'  "forward{i}" -> "STACKV4";')
    out.append("}")
    return "\n".join(out)


class Graph:
    """Builds each device once, in dependency order; disconnects them in reverse."""

    def __init__(self, opts: Options) -> None:
        self._opts = opts
        self._devices: dict[type, Any] = {}
        self._order: list[Any] = []
        self.forwarder: Forwarder | None = None

    async def start_forwarding(self) -> Forwarder:
        """Bind ``--forward``'s host ports and carry their connections to the app's stack."""
        opts = self._opts
        await self.get(v1.StackV4)
        app_ip = opts.interface().ip
        if opts.net_kind == "vnet":
            netif = await self.get(v1.Network)
            switch = getattr(netif, "inner", netif).switch
            host_if = ipaddress.IPv4Interface(
                f"{opts.host_side()}/{opts.interface().network.prefixlen}"
            )
            fwd, host_stack = await vnet_forwarder(opts.forward, switch, host_if, app_ip)
            self._order.insert(0, host_stack)
        else:
            fwd = kernel_forwarder(opts.forward, app_ip, opts.tap_name)
        await fwd.start()
        self.forwarder = fwd
        self._order.append(fwd)
        return fwd

    def built(self) -> set[type]:
        return set(self._devices)

    async def add(self, device: Any) -> None:
        self._order.append(device)

    async def get(self, signature: type) -> Any:
        if signature not in self._devices:
            device = await choose(signature, self._opts).build(self)
            self._devices[signature] = device
            self._order.append(device)
        return self._devices[signature]

    def stop_accepting(self) -> None:
        """The first step of a stop: no device takes new connections from here on."""
        for device in self._order:
            stop = getattr(device, "stop_accepting", None)
            if stop is not None:
                with contextlib.suppress(Exception):
                    stop()

    def live_connections(self) -> int:
        """Connections still being served: the most any device counts (a forwarded
        connection is one on the forwarder and one on the app's stack)."""
        n = 0
        for device in self._order:
            live = getattr(device, "live_connections", None)
            if live is not None:
                with contextlib.suppress(Exception):
                    n = max(n, int(live()))
        return n

    async def close(self) -> None:
        while self._order:
            device = self._order.pop()
            disconnect = getattr(device, "disconnect", None) or getattr(device, "close", None)
            if disconnect is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(disconnect(), _DISCONNECT_LIMIT)


#: How long one device may take to disconnect before the runner moves on to the next.
_DISCONNECT_LIMIT = 5.0


class _Cancel:
    """A background task kept with the devices, cancelled when they are disconnected."""

    def __init__(self, task: asyncio.Task[None]) -> None:
        self._task = task

    async def disconnect(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


class _Stop:
    """SIGINT and SIGTERM while the runner is up: the first starts a stop, a second one
    cuts the grace period short."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()
        self.signals: list[int] = []

    def __call__(self, signum: int) -> None:
        self.signals.append(signum)
        if self.requested.is_set():
            self.hurry.set()
        self.requested.set()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self, signum)

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)


async def _until(task: asyncio.Future[Any], event: asyncio.Event) -> bool:
    """Wait for ``task`` or ``event``, whichever comes first; True if the event did."""
    if task.done():
        return False
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return not task.done()


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and let it unwind (bounded: an app that ignores it is left)."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(task), _DISCONNECT_LIMIT)


def _say(msg: str) -> None:
    print(f"miragekit: {msg}", file=sys.stderr, flush=True)


async def _drain(graph: Graph, stop: _Stop, grace: float) -> None:
    """Stop accepting, then give live connections up to ``grace`` seconds to end."""
    graph.stop_accepting()
    loop = asyncio.get_running_loop()
    end = loop.time() + grace
    live = graph.live_connections()
    if live:
        _say(
            f"stopping: {live} connection{'' if live == 1 else 's'} still open, "
            f"waiting up to {grace:g} s (signal again to stop now)"
        )
    while graph.live_connections() and not stop.hurry.is_set():
        left = end - loop.time()
        if left <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.hurry.wait(), min(left, 0.05))


async def _exit_as_value(start: Awaitable[object]) -> object:
    """The app's ``raise SystemExit(...)`` as a value: inside a task asyncio would re-raise
    it out of the loop and log the task's traceback; ``None`` when ``start`` returns."""
    try:
        await start
    except SystemExit as e:
        return 0 if e.code is None else e.code
    return None


async def run_app(app: App, opts: Options, started: Callable[[], None] | None = None) -> int:
    """Link and run ``app``. Returns an exit status: 0 when the app returns or is stopped
    by SIGINT/SIGTERM (in any phase), 1 when it raises. ``started`` is called once the
    devices are up, just before the app's ``start``.

    On the first signal every backend stops accepting, live connections get
    ``opts.grace`` seconds to end, then the app is cancelled, what is left is aborted and
    the devices are disconnected in reverse order. A second signal skips the wait."""
    plan(app, opts)  # every link error before anything is built
    graph = Graph(opts)
    loop = asyncio.get_running_loop()
    stop = _Stop()
    stop.install(loop)
    try:
        startup = asyncio.ensure_future(_start_up(app, opts, graph))
        if await _until(startup, stop.requested):
            await _cancel(startup)
            return 0
        if started is not None:
            started()
        task = asyncio.ensure_future(_exit_as_value(app.start(**startup.result())))
        if await _until(task, stop.requested):
            await _drain(graph, stop, opts.grace)
            await _cancel(task)
            return 0
        code = task.result()  # the app's own exception goes up
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr, flush=True)  # raise SystemExit("why"): one line, status 1
        return 1
    finally:
        await graph.close()
        stop.remove(loop)
        if graph.forwarder is not None:
            c = graph.forwarder.counters
            print(
                f"miragekit: forwarded {c.accepted} connection{'' if c.accepted == 1 else 's'} ({c.completed} completed, "
                f"{c.aborted} aborted, {c.failed} failed), {c.to_app} bytes to the app, "
                f"{c.from_app} bytes back"
                + (
                    f"; {c.datagrams_to_app} datagrams to the app, {c.datagrams_from_app} back"
                    if any(f.proto == "udp" for f in opts.forward)
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )


async def _start_up(app: App, opts: Options, graph: Graph) -> dict[str, Any]:
    """Build the devices ``start`` takes and the forwarder; say what came up."""
    args = {name: await graph.get(sig) for name, sig in app.params}
    args.update(settings_values(app, opts.settings))
    if app.tls is not None:
        args[app.tls] = opts.tls_context()
    if (
        opts.net_kind == "vnet"
        and not opts.forward
        and not opts.sim
        and any(sig is v1.StackV4 for _, sig in app.params)
    ):
        how = (
            "run with --ip instead of --dhcp and add --forward HOSTPORT:PORT"
            if opts.dhcp
            else "add --forward HOSTPORT:PORT"
        )
        _say(f"the stack is alone on a virtual switch; {how} to reach it from the host")
    if opts.forward:
        fwd = await graph.start_forwarding()
        for line in describe_forward(opts, fwd.ports()):
            _say(f"forwarding {line}")
    if v1.StackV4 in graph.built():
        watcher = report_addresses(await graph.get(v1.StackV4), opts)
        if watcher is not None:
            await graph.add(_Cancel(watcher))
    return args
