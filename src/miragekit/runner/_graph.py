"""Building the device graph an application asks for, running it, and tearing it down."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from .. import v1
from ._app import App
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

    for name, sig in app.params:
        visit(sig, f"start({name})", ())
    if opts.forward:
        if v1.StackV4 not in nodes:
            raise LinkError(
                f"--forward: {app.name} takes no STACKV4, nothing listens to forward to"
            )
        nodes[v1.StackV4].users.append("--forward")
    return list(nodes.values())


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
        f"127.0.0.1:{h} -> {app_ip}:{f.port} {via}" for h, f in zip(hp, opts.forward, strict=True)
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

    async def add(self, device: Any) -> None:
        self._order.append(device)

    async def get(self, signature: type) -> Any:
        if signature not in self._devices:
            device = await choose(signature, self._opts).build(self)
            self._devices[signature] = device
            self._order.append(device)
        return self._devices[signature]

    async def close(self) -> None:
        while self._order:
            device = self._order.pop()
            disconnect = getattr(device, "disconnect", None) or getattr(device, "close", None)
            if disconnect is not None:
                with contextlib.suppress(Exception):
                    await disconnect()


async def _announce_ipv6(stack: Any) -> None:
    """Print the direct stack's IPv6 addresses as they become usable: after DAD, and
    from SLAAC once a router advertises a prefix (watched for the first 30 s)."""
    seen: set[Any] = set()
    for _ in range(300):
        for a in stack.ipv6().get_ip():
            if a not in seen:
                seen.add(a)
                print(f"miragekit: IPv6 address {a}", file=sys.stderr, flush=True)
        await asyncio.sleep(0.1)


async def run_app(app: App, opts: Options) -> int:
    """Link and run ``app``; SIGINT and SIGTERM stop it cleanly. Returns an exit status."""
    plan(app, opts)  # every link error before anything is built
    graph = Graph(opts)
    loop = asyncio.get_running_loop()
    stopped: list[int] = []
    try:
        args = {name: await graph.get(sig) for name, sig in app.params}
        if (
            opts.net_kind == "vnet"
            and not opts.forward
            and not opts.sim
            and any(sig is v1.StackV4 for _, sig in app.params)
        ):
            print(
                "miragekit: the stack is alone on a virtual switch; add --forward "
                "HOSTPORT:PORT to reach it from the host",
                file=sys.stderr,
                flush=True,
            )
        if opts.forward:
            fwd = await graph.start_forwarding()
            for line in describe_forward(opts, fwd.ports()):
                print(f"miragekit: forwarding {line}", file=sys.stderr, flush=True)
        task = asyncio.ensure_future(app.start(**args))
        announce = [
            asyncio.ensure_future(_announce_ipv6(v))
            for v in args.values()
            if getattr(v, "has_ipv6", False)
        ]

        def stop(signum: int) -> None:
            stopped.append(signum)
            task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop, signum)
        try:
            await task
        except asyncio.CancelledError:
            if not stopped:
                raise
        finally:
            for a in announce:
                a.cancel()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(signum)
    finally:
        await graph.close()
        if graph.forwarder is not None:
            c = graph.forwarder.counters
            print(
                f"miragekit: forwarded {c.accepted} connection{'' if c.accepted == 1 else 's'} ({c.completed} completed, "
                f"{c.aborted} aborted, {c.failed} failed), {c.to_app} bytes to the app, "
                f"{c.from_app} bytes back",
                file=sys.stderr,
                flush=True,
            )
    return 0
