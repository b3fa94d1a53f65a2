"""An event loop whose network calls go through the stack bound to the calling context.

Why a mixin: the network methods are the same on a real-time loop and on
``miragekit.sim``'s virtual-time loop, so :class:`StackLoopMixin` overrides only those
(``create_connection``, ``create_server``, ``create_datagram_endpoint``, the look-ups and
the ``sock_*`` family) and goes in front of any base loop class: :class:`StackEventLoop`
is it over ``asyncio.SelectorEventLoop``. ``start_tls``, ``open_connection`` and
``start_server`` are asyncio's own and sit on these.

Nothing falls through to the host's network: a call from a context with no stack bound
raises ``RuntimeError`` naming the call, a family, socket type or option the stack cannot
serve raises ``NotImplementedError`` naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..result import Error, Ok, Refused, Timeout
from . import _names
from ._bind import bind, bound_stack, resolver_for, stack_for, unsupported
from ._datagram import StackDatagramTransport, udp_port_in_use
from ._errors import connect_failed, flow_error, os_error
from ._server import StackServer, port_in_use
from ._sock import SockState, StackSocket, remember, state_of, take
from ._tls import tls_protocol
from ._transport import StackTransport

T = TypeVar("T")
_log = logging.getLogger(__name__)
_EPHEMERAL = (32768, 60999)  # Linux's ip_local_port_range
_ARP_WATCH = 0.1  # s between looks at ARP while a connect waits


def _is_v6(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.version == 6


# Addresses as text, by their packed bytes: one string for every connection to or from
# an address (each would have made its own two; there are few addresses and, at 10,000
# connections, many connections). Bounded: cleared when full.
_TEXT: dict[bytes, str] = {}


def _text(packed: bytes) -> str:
    """``str(ipaddress.ip_address(packed))``, made once per address."""
    got = _TEXT.get(packed)
    if got is None:
        if len(_TEXT) >= 1024:
            _TEXT.clear()
        got = _TEXT[packed] = str(ipaddress.ip_address(packed))
    return got


def _addr_extra(flow: Any, tcp: Any) -> dict[str, Any]:
    """``peername``, ``sockname`` and ``socket`` of a connection, as asyncio gives them."""
    ip, port = flow.get_dest()
    conn = getattr(flow, "connection", None)
    key = None
    ep = getattr(tcp, "endpoint", None)
    if ep is not None and conn is not None:
        key = ep.key_of(conn)
    if key is not None:
        laddr = _text(key[0])
        lport = key[1]
    else:
        laddr, lport = ("::" if _is_v6(ip) else "0.0.0.0"), 0
    if _is_v6(ip):
        fam = socket.AF_INET6
        peer: tuple[Any, ...] = (_text(ip.packed), port, 0, 0)
        sockname: tuple[Any, ...] = (laddr, lport, 0, 0)
    else:
        fam = socket.AF_INET
        peer, sockname = (_text(ip.packed), port), (laddr, lport)
    return {
        "peername": peer,
        "sockname": sockname,
        "socket": StackSocket(fam, socket.SOCK_STREAM, sockname, peer, conn),
        "flow": flow,
    }


class StackLoopMixin:
    """The network methods of an event loop, routed through the bound stack.

    Put it before an ``asyncio.AbstractEventLoop`` subclass in the bases.
    """

    async def _stack_for(self, call: str) -> Any:
        """The stack ``call`` goes through: the one bound to the calling context."""
        return stack_for(call)

    # -- names ------------------------------------------------------------------------

    async def getaddrinfo(
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[_names.AddrInfo]:
        stack = bound_stack()
        if stack is None:  # numbers and the static table answer without a stack
            return _names.getaddrinfo(host, port, family, type, proto, flags)
        return await self._resolve(stack, host, port, family, type, proto, flags)

    async def _resolve(
        self, stack: Any, host: Any, port: Any, family: int, type: int, proto: int, flags: int
    ) -> list[_names.AddrInfo]:
        resolver = resolver_for(stack)
        return await _names.resolve(resolver, host, port, family, type, proto, flags)

    async def _local_infos(
        self, stack: Any, host: Any, port: Any, family: int, type: int, proto: int, flags: int
    ) -> list[_names.AddrInfo]:
        """The addresses a server or endpoint binds to: numbers and the static table, else
        a name resolved as connect's are (a host's own name, in a simulation)."""
        try:
            return _names.getaddrinfo(host, port, family, type, proto, flags)
        except socket.gaierror as e:
            if e.errno != socket.EAI_NONAME or host is None:
                raise
        return await self._resolve(stack, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
        return _names.getnameinfo(sockaddr, flags)

    # -- connecting -------------------------------------------------------------------

    async def _stack_connect(self, stack: Any, host: str, port: int) -> tuple[Any, Any]:
        """Open a TCP connection through ``stack``: ``(flow, tcp layer)``, or the OSError
        a host socket would give (``ENETUNREACH`` at once without a route,
        ``EHOSTUNREACH`` once ARP or NDP gives up on the next hop)."""
        loop: asyncio.AbstractEventLoop = self  # type: ignore[assignment]
        ip = ipaddress.ip_address(host)
        if _is_v6(ip):
            if not getattr(stack, "has_ipv6", False):
                raise os_error(errno.ENETUNREACH)
            tcp = stack.tcpv6()
        else:
            tcp = stack.tcpv4()
        gave_up = _neighbour_watch(stack, ip)
        if gave_up == "no route":
            raise os_error(errno.ENETUNREACH)
        task = loop.create_task(tcp.create_connection((ip, port)))
        try:
            if gave_up is None:
                r = await task
            else:
                while True:
                    done, _ = await asyncio.wait({task}, timeout=_ARP_WATCH)
                    if done:
                        r = task.result()
                        break
                    if gave_up():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                        raise connect_failed(errno.EHOSTUNREACH, (host, port))
        except asyncio.CancelledError:
            task.cancel()  # the TCP layer aborts the attempt: no orphan SYN retries
            raise
        if isinstance(r, Ok):
            return r.value, tcp
        assert isinstance(r, Error)
        if isinstance(r.error, Refused):
            raise connect_failed(errno.ECONNREFUSED, (host, port))
        if isinstance(r.error, Timeout):
            raise connect_failed(errno.ETIMEDOUT, (host, port))
        raise connect_failed(flow_error(r.error).errno or errno.ECONNRESET, (host, port))

    async def _wrap(
        self,
        flow: Any,
        tcp: Any,
        protocol: asyncio.BaseProtocol,
        sslarg: Any,
        *,
        server_side: bool,
        server_hostname: str | None,
        handshake_timeout: float | None,
        shutdown_timeout: float | None,
    ) -> tuple[asyncio.Transport, StackTransport]:
        """The flow as a transport for ``protocol`` (through TLS when ``sslarg``):
        ``(what the application gets, the transport on the flow)``."""
        waiter, tls, raw = self._open(
            flow,
            tcp,
            protocol,
            sslarg,
            server_side=server_side,
            server_hostname=server_hostname,
            handshake_timeout=handshake_timeout,
            shutdown_timeout=shutdown_timeout,
        )
        try:
            await waiter
        except BaseException:
            raw.close()
            raise
        return (raw if tls is None else tls._app_transport), raw

    def _open(
        self,
        flow: Any,
        tcp: Any,
        protocol: asyncio.BaseProtocol,
        sslarg: Any,
        *,
        server_side: bool,
        server_hostname: str | None,
        handshake_timeout: float | None,
        shutdown_timeout: float | None,
    ) -> tuple[asyncio.Future[None], Any, StackTransport]:
        """:meth:`_wrap` up to its wait: ``(the future resolved once the protocol has
        the connection, the TLS protocol or None, the transport on the flow)``."""
        loop: asyncio.AbstractEventLoop = self  # type: ignore[assignment]
        waiter: asyncio.Future[None] = loop.create_future()
        extra = _addr_extra(flow, tcp)
        if not sslarg:
            return waiter, None, StackTransport(loop, flow, protocol, extra, waiter)
        tls = tls_protocol(
            loop,
            protocol,
            sslarg,
            waiter,
            server_side=server_side,
            server_hostname=server_hostname,
            handshake_timeout=handshake_timeout,
            shutdown_timeout=shutdown_timeout,
        )
        return waiter, tls, StackTransport(loop, flow, tls, extra)

    async def create_connection(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: Any = None,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        sock: Any = None,
        local_addr: Any = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        happy_eyeballs_delay: float | None = None,
        interleave: int | None = None,
        all_errors: bool = False,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        stack = await self._stack_for("create_connection")
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if family not in (0, socket.AF_INET, socket.AF_INET6):
            raise unsupported(f"create_connection(family={family!r})")
        if local_addr is not None and (
            int(local_addr[1] or 0) != 0 or not _is_local(stack, str(local_addr[0] or "0.0.0.0"))
        ):
            # Any local address of ours with port 0 is what the stack picks anyway.
            raise unsupported("create_connection(local_addr=...) with a fixed port")
        if sock is not None:
            if host is not None or port is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            st = take(sock)
            if st is None:
                raise unsupported(
                    "create_connection(sock=...) with a socket not connected by sock_connect"
                )
            flow, tcp = st.flow, st.tcp
            # The library's own socket never connected anywhere: the transport owns the
            # connection now, as asyncio's owns the socket.
            with contextlib.suppress(OSError):
                sock.close()
        else:
            if host is None and port is None:
                raise ValueError("host and port was not specified and no sock specified")
            infos = await self._resolve(stack, host, port, family, socket.SOCK_STREAM, proto, flags)
            errors: list[OSError] = []
            for _fam, _t, _p, _c, addr in infos:
                try:
                    flow, tcp = await self._stack_connect(stack, addr[0], addr[1])
                    break
                except OSError as e:
                    errors.append(e)
            else:
                if len(errors) == 1 or (all_errors is False and len({str(e) for e in errors}) == 1):
                    raise errors[0]
                if all_errors:
                    raise ExceptionGroup("create_connection failed", errors)
                raise OSError("Multiple exceptions: {}".format(", ".join(str(e) for e in errors)))
        protocol = protocol_factory()
        transport, _ = await self._wrap(
            flow,
            tcp,
            protocol,
            ssl,
            server_side=False,
            server_hostname=server_hostname,
            handshake_timeout=ssl_handshake_timeout,
            shutdown_timeout=ssl_shutdown_timeout,
        )
        return transport, protocol

    # -- serving ----------------------------------------------------------------------

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: Any = None,
        port: int | None = None,
        *,
        family: int = socket.AF_UNSPEC,
        flags: int = socket.AI_PASSIVE,
        sock: Any = None,
        backlog: int = 100,
        ssl: Any = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> StackServer:
        stack = await self._stack_for("create_server")
        loop: asyncio.AbstractEventLoop = self  # type: ignore[assignment]
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if family not in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
            raise unsupported(f"create_server(family={family!r})")
        if sock is not None:
            if host is not None or port is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            bound = getattr(sock, "_mk_bound", None)  # recorded by miragekit exec's socket
            if bound is None:
                raise unsupported("create_server(sock=...) with a host socket")
            host, port = bound[0], bound[1]
        port = int(port or 0)
        hosts = host if isinstance(host, list | tuple) else [host]
        for h in hosts:
            infos = await self._local_infos(
                stack, h or None, port, family, socket.SOCK_STREAM, 0, flags
            )
            for _f, _t, _p, _c, sa in infos:
                if not _is_local(stack, sa[0]):
                    raise OSError(
                        errno.EADDRNOTAVAIL,
                        f"error while attempting to bind on address {sa!r}: "
                        "cannot assign requested address",
                    )
        if port == 0:
            port = _free_port(loop, lambda p: port_in_use(stack, p))
        elif port_in_use(stack, port):
            sa = (hosts[0] or "0.0.0.0", port)
            raise OSError(
                errno.EADDRINUSE,
                f"error while attempting to bind on address {sa!r}: address already in use",
            )
        if ssl:
            from ._tls import context_for

            context_for(ssl, server_side=True, server_hostname=None)  # ValueError early

        def accept(flow: Any, tcp: Any) -> tuple[asyncio.Future[None], StackTransport]:
            """A connection's protocol and transport (the server runs this in its
            context): the transport's waiter and the transport."""
            waiter, _, raw = self._open(
                flow,
                tcp,
                protocol_factory(),
                ssl,
                server_side=True,
                server_hostname=None,
                handshake_timeout=ssl_handshake_timeout,
                shutdown_timeout=ssl_shutdown_timeout,
            )
            return waiter, raw

        if sock is not None:
            sock._mk_bound = (sock._mk_bound[0], port, *sock._mk_bound[2:])  # the port taken
        server = StackServer(loop, stack, port, accept)
        if start_serving:
            await server.start_serving()
            await asyncio.sleep(0)  # asyncio lets a turn pass here too
        return server

    # -- UDP --------------------------------------------------------------------------

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: Any = None,
        remote_addr: Any = None,
        *,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        reuse_port: bool | None = None,
        allow_broadcast: bool | None = None,
        sock: Any = None,
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        stack = await self._stack_for("create_datagram_endpoint")
        loop: asyncio.AbstractEventLoop = self  # type: ignore[assignment]
        if sock is not None:
            raise unsupported("create_datagram_endpoint(sock=...)")
        if family not in (0, socket.AF_INET, socket.AF_INET6):
            raise unsupported(f"create_datagram_endpoint(family={family!r})")
        if reuse_port:
            raise unsupported("create_datagram_endpoint(reuse_port=True)")
        remote: tuple[str, int] | None = None
        if remote_addr is not None:
            info = await self._resolve(
                stack, remote_addr[0], remote_addr[1], family, socket.SOCK_DGRAM, proto, flags
            )
            fam, *_, sa = info[0]
            family = family or fam
            remote = (str(sa[0]), int(sa[1]))
        port = 0
        if local_addr is not None:
            info = await self._local_infos(
                stack,
                local_addr[0],
                local_addr[1],
                family,
                socket.SOCK_DGRAM,
                proto,
                flags | socket.AI_PASSIVE,
            )
            fam, *_, sa = info[0]
            family = family or fam
            if not _is_local(stack, sa[0]):
                raise os_error(errno.EADDRNOTAVAIL)
            port = int(sa[1])
        if port == 0:
            port = _free_port(loop, lambda p: udp_port_in_use(stack, p))
        elif udp_port_in_use(stack, port):
            raise os_error(errno.EADDRINUSE)
        protocol = protocol_factory()
        transport = StackDatagramTransport(loop, stack, port, protocol, family, remote)
        return transport, protocol

    # -- the sock_* family ------------------------------------------------------------

    async def sock_connect(self, sock: Any, address: Any) -> None:
        if not _is_ip(sock):
            return await self._base("sock_connect")(sock, address)  # type: ignore[no-any-return]
        stack = await self._stack_for("sock_connect")
        if sock.type != socket.SOCK_STREAM:
            raise unsupported(f"sock_connect on socket type {sock.type!r}")
        info = await self._resolve(
            stack, address[0], address[1], sock.family, socket.SOCK_STREAM, 0, 0
        )
        sa = info[0][4]
        flow, tcp = await self._stack_connect(stack, sa[0], sa[1])
        remember(sock, SockState(flow, tcp))

    def _base(self, name: str) -> Any:
        """The base loop's method: the ``sock_*`` calls on Unix sockets (local, no IP)
        stay the base loop's (``create_unix_connection`` uses them)."""
        return getattr(super(), name)

    async def sock_sendall(self, sock: Any, data: Any) -> None:
        if not _is_ip(sock):
            return await self._base("sock_sendall")(sock, data)  # type: ignore[no-any-return]
        st = state_of(sock, "sock_sendall")
        r = await st.flow.write(bytes(data))
        if isinstance(r, Error):
            raise flow_error(r.error)
        if not isinstance(r, Ok):
            raise os_error(errno.EPIPE)

    async def sock_recv(self, sock: Any, nbytes: int) -> bytes:
        if not _is_ip(sock):
            return await self._base("sock_recv")(sock, nbytes)  # type: ignore[no-any-return]
        st = state_of(sock, "sock_recv")
        if not st.pending and not st.eof:
            r = await st.flow.read()
            if isinstance(r, Ok):
                st.pending += r.value
            elif isinstance(r, Error):
                raise flow_error(r.error)
            else:
                st.eof = True
        out = bytes(st.pending[:nbytes])
        del st.pending[:nbytes]
        return out

    async def sock_recv_into(self, sock: Any, buf: Any) -> int:
        if not _is_ip(sock):
            return await self._base("sock_recv_into")(sock, buf)  # type: ignore[no-any-return]
        view = memoryview(buf).cast("B")
        data = await self.sock_recv(sock, len(view))
        view[: len(data)] = data
        return len(data)

    async def sock_accept(self, sock: Any) -> tuple[Any, Any]:
        if not _is_ip(sock):
            return await self._base("sock_accept")(sock)  # type: ignore[no-any-return]
        stack = await self._stack_for("sock_accept")
        acceptor = _acceptors.get(sock)
        if acceptor is None:
            bound = getattr(sock, "_mk_bound", None)  # recorded by miragekit exec's socket
            if bound is None:
                raise unsupported("sock_accept on a host socket (outside miragekit exec)")
            port = int(bound[1])
            if port == 0:
                port = _free_port(self, lambda p: port_in_use(stack, p))  # type: ignore[arg-type]
            elif port_in_use(stack, port):
                raise os_error(errno.EADDRINUSE)
            sock._mk_bound = (bound[0], port, *bound[2:])
            acceptor = _acceptors[sock] = asyncio.Queue()

            async def on_flow(flow: Any) -> None:
                done: asyncio.Future[None] = self.create_future()  # type: ignore[attr-defined]
                await acceptor.put((flow, done))
                await done  # until the program closes the accepted socket

            stack.listen_tcpv4(port=port, callback=on_flow)
        flow, done = await acceptor.get()
        ip = flow.get_dest()[0]
        tcp = stack.tcpv6() if _is_v6(ip) else stack.tcpv4()
        extra = _addr_extra(flow, tcp)
        conn = type(sock)(socket.AF_INET6 if _is_v6(ip) else socket.AF_INET, socket.SOCK_STREAM)
        conn._mk_bound, conn._mk_peer = extra["sockname"], extra["peername"]
        conn._mk_on_close = lambda: done.done() or done.set_result(None)
        remember(conn, SockState(flow, tcp))
        return conn, extra["peername"]

    async def sock_sendto(self, sock: Any, data: Any, address: Any) -> int:
        if not _is_ip(sock):
            return await self._base("sock_sendto")(sock, data, address)  # type: ignore[no-any-return]
        await self._stack_for("sock_sendto")
        raise unsupported("sock_sendto (use create_datagram_endpoint)")

    async def sock_recvfrom(self, sock: Any, bufsize: int) -> tuple[bytes, Any]:
        if not _is_ip(sock):
            return await self._base("sock_recvfrom")(sock, bufsize)  # type: ignore[no-any-return]
        await self._stack_for("sock_recvfrom")
        raise unsupported("sock_recvfrom (use create_datagram_endpoint)")

    async def sock_sendfile(
        self,
        sock: Any,
        file: Any,
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        if not _is_ip(sock):
            base = self._base("sock_sendfile")
            return await base(sock, file, offset, count, fallback=fallback)  # type: ignore[no-any-return]
        await self._stack_for("sock_sendfile")
        raise unsupported("sock_sendfile (use transport.write or loop.sendfile)")

    async def connect_accepted_socket(self, protocol_factory: Any, sock: Any, **kw: Any) -> Any:
        if not _is_ip(sock):
            return await self._base("connect_accepted_socket")(protocol_factory, sock, **kw)
        await self._stack_for("connect_accepted_socket")
        raise unsupported("connect_accepted_socket")


class StackEventLoop(StackLoopMixin, asyncio.SelectorEventLoop):  # type: ignore[misc]
    """A real-time asyncio loop whose networking goes through the bound stack."""


_acceptors: weakref.WeakKeyDictionary[Any, asyncio.Queue[tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)
"""Listening sockets of ``miragekit exec`` and the connections waiting for ``sock_accept``."""


def _is_ip(sock: Any) -> bool:
    return getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6)


def _is_local(stack: Any, host: str) -> bool:
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified or ip.is_loopback or ip.version == 6:
        return True
    return ip in stack.ipv4().get_ip()


def _free_port(loop: asyncio.AbstractEventLoop, in_use: Callable[[int], bool]) -> int:
    """An unused port from the ephemeral range, as ``bind(port=0)`` picks one."""
    rng = getattr(loop, "rng", None)
    import random

    r = rng() if callable(rng) else random.Random()
    lo, hi = _EPHEMERAL
    start = r.randint(lo, hi)
    for i in range(hi - lo + 1):
        p = lo + (start - lo + i) % (hi - lo + 1)
        if not in_use(p):
            return p
    raise os_error(errno.EADDRINUSE)


def _neighbour_watch(stack: Any, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    """What a connect to ``ip`` watches: ``"no route"``; a function saying whether ARP
    (NDP over IPv6) gave up on the next hop, when it is still to be resolved; or None
    (a neighbour already known, our own address, a stack without these layers)."""
    if _is_v6(ip):
        return _ndp_watch(stack.ipv6(), ip.packed)
    ipv4 = stack.ipv4()
    route = getattr(ipv4, "_route", None)
    arp = getattr(ipv4, "arp", None)
    if route is None or arp is None:
        return None
    r = route(int(ip))
    if r is None:
        return "no route"
    nexthop, mac = r
    if mac is not None or arp.lookup(nexthop, ipv4._loop.time()) is not None:
        return None  # our own address, broadcast, or a neighbour ARP already knows
    failed0 = arp.counters.resolution_failed

    def gave_up() -> bool:
        return (
            arp.counters.resolution_failed != failed0
            and nexthop not in arp._pending
            and arp.lookup(nexthop, ipv4._loop.time()) is None
        )

    return gave_up


def _ndp_watch(ipv6: Any, dst: bytes) -> Any:
    """:func:`_neighbour_watch` over IPv6: no route when the destination is off-link
    and no router is known; NDP gives up after its multicast solicitations (RFC 4861
    7.3.3: 3 s by default), as Linux does before ``EHOSTUNREACH``."""
    ndp = getattr(ipv6, "ndp", None)
    if ndp is None or dst[0] == 0xFF or ipv6._rx_addrs.get(dst) is False:
        return None  # multicast, ::1 or our own address: no neighbour to resolve
    nexthop = ndp.next_hop(dst, ipv6._loop.time())
    if nexthop is None:
        return "no route"
    if ndp.lookup(nexthop) is not None:
        return None
    failed0 = ndp.counters.resolution_failed
    seen: list[Any] = []  # the cache entry our SYN made (a retransmission may make another)

    def gave_up() -> bool:
        entry = ndp.cache.get(nexthop)
        if not seen:
            if entry is not None:
                seen.append(entry)
            return False
        return ndp.counters.resolution_failed != failed0 and entry is not seen[0]

    return gave_up


def run(
    main: Coroutine[Any, Any, T],
    *,
    stack: Any = None,
    debug: bool | None = None,
) -> T:
    """``asyncio.run`` on a :class:`StackEventLoop`, with ``main`` bound to ``stack``.

    ``stack`` is a STACKV4, or an async callable that makes one on the new loop (most
    stacks need a running loop to be made); None leaves binding to ``main``.
    """

    async def bound() -> T:
        s = stack
        if s is not None and not hasattr(s, "tcpv4") and callable(s):
            made = s()
            s = await made if isinstance(made, Awaitable) else made
        if s is None:
            return await main
        with bind(s):
            return await main

    with asyncio.Runner(debug=debug, loop_factory=StackEventLoop) as runner:
        return runner.run(bound())
