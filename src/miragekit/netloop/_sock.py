"""Socket stand-ins: what ``get_extra_info("socket")`` and ``server.sockets`` give, and the
bookkeeping behind ``sock_connect``/``sock_sendall``/``sock_recv`` for the non-blocking
socket objects libraries create before they connect (aiohttp's happy eyeballs).

Why stand-ins: a connection of the stack has no file descriptor. Libraries read the
addresses and set a few options (``TCP_NODELAY``, keep-alive); those are answered or
accepted, an option the stack cannot honour raises ``NotImplementedError`` naming it.
"""

from __future__ import annotations

import socket
import weakref
from dataclasses import dataclass, field
from typing import Any

from ._bind import unsupported

# Options accepted as no-ops (the stack's TCP has no per-socket knob for them).
_NOOP_OPTIONS = {
    (socket.SOL_SOCKET, socket.SO_REUSEADDR),
    (socket.SOL_SOCKET, socket.SO_REUSEPORT),
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (socket.SOL_SOCKET, socket.SO_SNDBUF),
    (socket.SOL_SOCKET, socket.SO_RCVBUF),
    (socket.SOL_SOCKET, socket.SO_LINGER),
    (socket.SOL_SOCKET, socket.SO_BROADCAST),
    (socket.IPPROTO_TCP, socket.TCP_NODELAY),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_QUICKACK", 12)),
    (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
}


class StackSocket:
    """Enough of ``socket.socket`` for code that inspects a transport's socket."""

    def __init__(
        self,
        family: int,
        type: int,
        sockname: tuple[Any, ...],
        peername: tuple[Any, ...] | None = None,
        conn: Any = None,
    ) -> None:
        self.family = socket.AddressFamily(family)
        self.type = socket.SocketKind(type)
        self.proto = socket.IPPROTO_TCP if type == socket.SOCK_STREAM else socket.IPPROTO_UDP
        self._sockname = sockname
        self._peername = peername
        self._conn = conn  # the sans-I/O connection, for TCP_NODELAY
        # The options set, made at the first setsockopt: every connection has a socket
        # stand-in and few are given options (an empty dict is 64 bytes each).
        self._opts: dict[tuple[int, int], Any] | None = None

    def __repr__(self) -> str:
        peer = f" raddr={self._peername}" if self._peername else ""
        return f"<miragekit StackSocket family={self.family.name} laddr={self._sockname}{peer}>"

    def getsockname(self) -> tuple[Any, ...]:
        return self._sockname

    def getpeername(self) -> tuple[Any, ...]:
        if self._peername is None:
            raise OSError(107, "Transport endpoint is not connected")
        return self._peername

    def setsockopt(self, level: int, option: int, value: Any, *rest: Any) -> None:
        if (level, option) not in _NOOP_OPTIONS:
            raise unsupported(f"setsockopt(level={level}, option={option})")
        if self._opts is None:
            self._opts = {}
        self._opts[level, option] = value
        if (level, option) == (socket.IPPROTO_TCP, socket.TCP_NODELAY) and self._conn is not None:
            self._conn.set_nodelay(bool(value))

    def getsockopt(self, level: int, option: int, *rest: Any) -> Any:
        if (level, option) not in _NOOP_OPTIONS:
            raise unsupported(f"getsockopt(level={level}, option={option})")
        return 0 if self._opts is None else self._opts.get((level, option), 0)

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool) -> None:
        pass

    def gettimeout(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


@dataclass
class SockState:
    """A library's socket object that ``sock_connect`` connected through the stack."""

    flow: Any
    tcp: Any
    pending: bytearray = field(default_factory=bytearray)  # read past what was asked
    eof: bool = False


_connected: weakref.WeakKeyDictionary[Any, SockState] = weakref.WeakKeyDictionary()


def remember(sock: Any, state: SockState) -> None:
    _connected[sock] = state


def state_of(sock: Any, call: str) -> SockState:
    st = _connected.get(sock)
    if st is None:
        raise unsupported(f"{call} on a socket that sock_connect did not connect")
    return st


def take(sock: Any) -> SockState | None:
    return _connected.pop(sock, None)
