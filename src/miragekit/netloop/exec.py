"""``miragekit exec``: an unmodified Python program whose asyncio loops all go through a
stack the runner builds.

How: every way a program gets a loop (``asyncio.run``, ``asyncio.new_event_loop``,
``asyncio.SelectorEventLoop()``, a policy it sets) yields an :class:`ExecLoop`. A context
bound with ``bind`` keeps its stack; any other network call goes through the loop's own
stack, built from the runner's options on first use (a stack lives on one loop) and
disconnected when the loop closes. Blocking ``socket`` calls on IP sockets would reach the
host's network behind the stack's back: they raise ``NotImplementedError`` instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import runpy
import socket
import sys
from collections.abc import Sequence
from typing import Any

from ._bind import DNS_SERVERS, bound_stack
from ._loop import StackEventLoop

_options: Any = None  # the runner's Options, set by install()
_host_sockets_ok = False  # True while the runner builds a stack (a VXLAN underlay socket)
_HostSocket = socket.socket
_BLOCKED = (
    "accept", "connect", "connect_ex", "recv", "recv_into", "recvfrom",
    "recvfrom_into", "recvmsg", "send", "sendall", "sendfile", "sendmsg", "sendto",
)  # fmt: skip


class ExecLoop(StackEventLoop):
    """A stack loop that builds its own stack (from ``miragekit exec``'s options) for
    contexts that bound none."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._graph: Any = None
        self._stack: Any = None
        self._building: asyncio.Future[Any] | None = None

    async def _stack_for(self, call: str) -> Any:
        s = bound_stack()
        if s is not None:
            return s
        if self._stack is not None:
            return self._stack
        if self._building is None:
            self._building = self.create_future()
            try:
                self._stack = await self._build()
            except BaseException as e:
                self._building.set_exception(e)
                self._building.exception()  # retrieved: raised here and to waiters
                raise
            self._building.set_result(self._stack)
            return self._stack
        return await asyncio.shield(self._building)

    async def _build(self) -> Any:
        from .. import v1
        from ..runner import Graph

        global _host_sockets_ok
        self._graph = Graph(_options)
        _host_sockets_ok = True
        try:
            return await self._graph.get(v1.StackV4)
        finally:
            _host_sockets_ok = False

    def close(self) -> None:
        graph, self._graph = self._graph, None
        if graph is not None and not self.is_closed() and not self.is_running():
            self.run_until_complete(graph.close())
        super().close()


class ExecPolicy(asyncio.DefaultEventLoopPolicy):
    """Every new loop is an :class:`ExecLoop`."""

    _loop_factory = ExecLoop


class _WrappedPolicy(ExecPolicy):
    """A policy the program set for itself: its loops must be stack loops."""

    def __init__(self, inner: asyncio.AbstractEventLoopPolicy) -> None:
        super().__init__()
        self._inner = inner

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._inner.new_event_loop()
        if not isinstance(loop, ExecLoop):
            loop.close()
            raise NotImplementedError(
                f"{type(loop).__module__}.{type(loop).__qualname__}: this program's own event "
                "loop cannot be routed through the miragekit stack"
            )
        return loop


class GuardedSocket(_HostSocket):
    """``socket.socket`` in exec mode: IP sockets may be created (libraries make one and
    hand it to ``loop.sock_connect``), but their blocking calls raise. ``bind`` and
    ``listen`` only record the address, for a server that hands the socket to
    ``loop.create_server(sock=...)`` (uvicorn, aiohttp's ``SockSite``): the stack listens."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._mk_host_ok = _host_sockets_ok or self.family not in (
            socket.AF_INET,
            socket.AF_INET6,
        )
        self._mk_bound: tuple[Any, ...] | None = None
        self._mk_peer: tuple[Any, ...] | None = None  # a socket sock_accept gave
        self._mk_on_close: Any = None

    def bind(self, address: Any) -> None:
        if self._mk_host_ok:
            return super().bind(address)
        self._mk_bound = (str(address[0]), int(address[1]), *address[2:])
        return None

    def listen(self, *backlog: int) -> None:
        if self._mk_host_ok:
            return super().listen(*backlog)
        if self._mk_bound is None:
            raise NotImplementedError(
                "socket.listen() on an IP socket that was not bound: bind it first, then "
                "hand it to loop.create_server(sock=...)"
            )
        return None

    def getsockname(self) -> Any:
        if self._mk_bound is not None:
            return self._mk_bound
        return super().getsockname()

    def getpeername(self) -> Any:
        if self._mk_peer is not None:
            return self._mk_peer
        return super().getpeername()

    def close(self) -> None:
        if self._mk_on_close is not None:
            self._mk_on_close()  # the stack closes the accepted connection
            self._mk_on_close = None
        super().close()


def _guard(name: str) -> Any:
    real = getattr(_HostSocket, name)

    def guarded(self: Any, *args: Any, **kw: Any) -> Any:
        if not getattr(self, "_mk_host_ok", True):
            raise NotImplementedError(
                f"socket.{name}() on an IP socket: under miragekit exec only asyncio's network "
                "calls go through the stack; blocking sockets are not supported"
            )
        return real(self, *args, **kw)

    guarded.__name__ = name
    return guarded


for _name in _BLOCKED:
    setattr(GuardedSocket, _name, _guard(_name))


def install(options: Any) -> None:
    """Route every asyncio loop this process makes through a stack built from ``options``."""
    global _options
    _options = options
    DNS_SERVERS[:] = list(getattr(options, "dns", ()))
    asyncio.set_event_loop_policy(ExecPolicy())
    real_set_policy = asyncio.set_event_loop_policy

    def set_event_loop_policy(policy: asyncio.AbstractEventLoopPolicy | None) -> None:
        real_set_policy(ExecPolicy() if policy is None else _WrappedPolicy(policy))

    asyncio.set_event_loop_policy = set_event_loop_policy
    asyncio.events.set_event_loop_policy = set_event_loop_policy
    asyncio.SelectorEventLoop = ExecLoop
    asyncio.unix_events.SelectorEventLoop = ExecLoop
    socket.socket = GuardedSocket  # type: ignore[misc]


class NoProgram(Exception):
    """The program to run cannot be found (a missing script or module): a misuse of exec,
    told in one line, unlike an error the program itself raises (its traceback)."""


def run_program(argv: Sequence[str]) -> int:
    """Run ``script.py args`` or ``-m module args`` as ``__main__``; its exit status."""
    if not argv:
        raise NoProgram("nothing to run: give -- script.py ARGS or -- -m MODULE ARGS")
    try:
        if argv[0] == "-m":
            if len(argv) < 2:
                raise NoProgram("-m needs a module name")
            sys.argv = [argv[1], *argv[2:]]
            sys.path.insert(0, os.getcwd())
            _find_module(argv[1])
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            script = argv[0]
            if not os.path.isfile(script):
                raise NoProgram(f"{script}: no such file")
            sys.argv = list(argv)
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    return 0


def _find_module(name: str) -> None:
    """A :class:`NoProgram` when module ``name`` (or a package on its path) does not
    exist; an error inside a module that does exist is the program's own."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError as e:
        if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
            raise
        spec = None
    if spec is None:
        raise NoProgram(f"-m {name}: no module named {name!r}")
