"""Building the device graph an application asks for, running it, and tearing it down."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from typing import Any

from ._app import App
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
    return list(nodes.values())


def describe_text(app: App, opts: Options) -> str:
    lines = [f"{app.name}: start({', '.join(n for n, _ in app.params)})"]
    for node in plan(app, opts):
        lines.append(f"  {signature_name(node.signature)}: {node.choice.label}")
        for dep in node.choice.needs:
            lines.append(f"    needs {signature_name(dep)}")
        lines.append(f"    used by {', '.join(node.users)}")
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
    out.append("}")
    return "\n".join(out)


class Graph:
    """Builds each device once, in dependency order; disconnects them in reverse."""

    def __init__(self, opts: Options) -> None:
        self._opts = opts
        self._devices: dict[type, Any] = {}
        self._order: list[Any] = []

    async def get(self, signature: type) -> Any:
        if signature not in self._devices:
            device = await choose(signature, self._opts).build(self)
            self._devices[signature] = device
            self._order.append(device)
        return self._devices[signature]

    async def close(self) -> None:
        while self._order:
            device = self._order.pop()
            disconnect = getattr(device, "disconnect", None)
            if disconnect is not None:
                with contextlib.suppress(Exception):
                    await disconnect()


async def run_app(app: App, opts: Options) -> int:
    """Link and run ``app``; SIGINT and SIGTERM stop it cleanly. Returns an exit status."""
    graph = Graph(opts)
    loop = asyncio.get_running_loop()
    stopped: list[int] = []
    try:
        args = {name: await graph.get(sig) for name, sig in app.params}
        task = asyncio.ensure_future(app.start(**args))

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
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(signum)
    finally:
        await graph.close()
    return 0
