"""The stack-routed event loop (miragekit.netloop) behaves as asyncio does.

Each comparison runs one snippet twice: on plain asyncio with host sockets on loopback,
and on ``miragekit.aio.run`` with two DirectStackV4 on a virtual switch (the server's
stack at 10.0.0.2, the client's at 10.0.0.1), and compares what the snippet observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from miragekit import aio, tcp, v1
from miragekit.link import VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static


@dataclass
class Env:
    """Where a snippet serves and connects, and how it binds its two sides."""

    host: str
    server: Callable[[], ContextManager[Any]]
    client: Callable[[], ContextManager[Any]]
    switch: VnetSwitch | None = None
    stacks: tuple[DirectStackV4, ...] = ()


Snippet = Callable[[Env], Awaitable[Any]]
T = TypeVar("T")


async def make_stacks(
    n: int = 2, switch: VnetSwitch | None = None
) -> tuple[VnetSwitch, list[DirectStackV4]]:
    sw = switch or VnetSwitch(seed=1)
    out = []
    for i in range(1, n + 1):
        netif = sw.add_interface(f"s{i}")
        r = await DirectStackV4.connect(
            v1.StackConfig(f"s{i}", None, netif, Static(f"10.0.0.{i}/24"))
        )
        assert isinstance(r, Ok)
        out.append(r.value)
    return sw, out


def on_host(snippet: Snippet) -> Any:
    async def main() -> Any:
        async with asyncio.timeout(60):
            return await snippet(Env("127.0.0.1", contextlib.nullcontext, contextlib.nullcontext))

    return asyncio.run(main())


def on_stacks(snippet: Snippet) -> Any:
    async def main() -> Any:
        sw, (c, s) = await make_stacks()
        try:
            async with asyncio.timeout(60):
                env = Env("10.0.0.2", lambda: aio.bind(s), lambda: aio.bind(c), sw, (c, s))
                return await snippet(env)
        finally:
            await c.disconnect()
            await s.disconnect()

    return aio.run(main())


def both(snippet: Snippet) -> Any:
    """The snippet's observation on host sockets, checked equal on the stacks."""
    host = on_host(snippet)
    ours = on_stacks(snippet)
    assert ours == host
    return host


def outcome(e: BaseException) -> tuple[str, int | None, str]:
    return (type(e).__name__, getattr(e, "errno", None), str(e))


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


# -- the loop's basics ------------------------------------------------------------------


def test_streams_round_trip_and_addresses() -> None:
    async def snippet(env: Env) -> Any:
        with env.server():
            server = await asyncio.start_server(echo, env.host, 0)
        (sock,) = [s for s in server.sockets if s.family == socket.AF_INET]
        port = sock.getsockname()[1]
        with env.client():
            reader, writer = await asyncio.open_connection(env.host, port)
        writer.write(b"x" * 100_000)
        await writer.drain()
        got = await reader.readexactly(100_000)
        peer = writer.get_extra_info("peername")
        name = writer.get_extra_info("sockname")
        s = writer.get_extra_info("socket")
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        same_peer = s.getpeername() == peer
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return (
            got == b"x" * 100_000,
            peer == (env.host, port),
            same_peer,
            32768 <= port <= 60999,
            len(name),
            s.family,
        )

    assert both(snippet) == (True, True, True, True, 2, socket.AF_INET)


def test_no_stack_bound_is_a_clear_error_never_the_host() -> None:
    async def main() -> list[str]:
        out = []
        for call in (
            asyncio.open_connection("127.0.0.1", 9),
            asyncio.start_server(echo, "127.0.0.1", 0),
            asyncio.get_running_loop().create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("127.0.0.1", 9)
            ),
        ):
            with pytest.raises(RuntimeError) as e:
                await call
            out.append(str(e.value).split(":")[0])
        return out

    assert aio.run(main()) == ["create_connection", "create_server", "create_datagram_endpoint"]


def test_unsupported_family_and_option_name_themselves() -> None:
    async def main() -> None:
        _, (c, s) = await make_stacks()
        loop = asyncio.get_running_loop()
        with aio.bind(c):
            with pytest.raises(NotImplementedError, match="family"):
                await loop.create_connection(
                    asyncio.Protocol, "10.0.0.2", 80, family=socket.AF_UNIX
                )
            with pytest.raises(NotImplementedError, match="local_addr"):
                await loop.create_connection(
                    asyncio.Protocol, "10.0.0.2", 80, local_addr=("10.0.0.1", 5000)
                )
            with pytest.raises(NotImplementedError, match="sock_accept"):
                await loop.sock_accept(socket.socket())
        with aio.bind(s):
            server = await asyncio.start_server(echo, None, 7)
        with aio.bind(c):
            _, w = await asyncio.open_connection("10.0.0.2", 7, local_addr=("10.0.0.1", 0))
        with pytest.raises(NotImplementedError, match="setsockopt"):
            w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        w.close()
        server.close()
        await c.disconnect()
        await s.disconnect()

    aio.run(main())


def test_names_are_numeric_or_from_the_static_table() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        assert [i[4] for i in infos] == [("127.0.0.1", 80), ("::1", 80, 0, 0)]
        assert (await loop.getaddrinfo("10.1.2.3", "http"))[0][4] == ("10.1.2.3", 80)
        with pytest.raises(socket.gaierror) as e:
            await loop.getaddrinfo("example.invalid", 80)
        assert e.value.errno == socket.EAI_NONAME
        assert await loop.getnameinfo(("127.0.0.1", 80)) == ("localhost", "80")

    aio.run(main())


def test_one_loop_several_stacks_tasks_inherit_the_binding() -> None:
    async def main() -> list[Any]:
        _, stacks = await make_stacks(3)
        seen: list[Any] = []

        async def who(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("peername")[0])
            writer.close()

        with aio.bind(stacks[2]):
            server = await asyncio.start_server(who, None, 5000)

        async def client() -> None:
            r, w = await asyncio.open_connection("10.0.0.3", 5000)
            await r.read()
            w.close()

        for s in stacks[:2]:
            with aio.bind(s):
                task = asyncio.create_task(client())
            await task
        server.close()
        for s in stacks:
            await s.disconnect()
        return seen

    assert aio.run(main()) == ["10.0.0.1", "10.0.0.2"]


# -- behave as asyncio does ---------------------------------------------------------------


def test_closed_server_refuses_new_connections() -> None:
    async def snippet(env: Env) -> Any:
        with env.server():
            server = await asyncio.start_server(echo, env.host, 0)
        port = server.sockets[0].getsockname()[1]
        with env.client():
            _r, w = await asyncio.open_connection(env.host, port)
            w.close()
            await w.wait_closed()
            server.close()
            await server.wait_closed()
            try:
                await asyncio.open_connection(env.host, port)
            except OSError as e:
                text = str(e) == f"[Errno 111] Connect call failed ('{env.host}', {port})"
                return (type(e).__name__, e.errno, text), server.is_serving(), server.sockets
        return "connected"

    got = both(snippet)
    assert got[0] == ("ConnectionRefusedError", errno.ECONNREFUSED, True)
    assert got[1:] == (False, ())


def test_second_server_on_a_port_in_use() -> None:
    async def snippet(env: Env) -> Any:
        with env.server():
            server = await asyncio.start_server(echo, env.host, 0)
            port = server.sockets[0].getsockname()[1]
            try:
                await asyncio.start_server(echo, env.host, port)
            except OSError as e:
                return e.errno
            finally:
                server.close()
        return "bound twice"

    assert both(snippet) == errno.EADDRINUSE


def test_after_a_reset_write_drops_and_drain_raises() -> None:
    async def snippet(env: Env) -> Any:
        async def rst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            linger0 = struct.pack("ii", 1, 0)  # abort() then resets, on the host too
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
            writer.transport.abort()

        with env.server():
            server = await asyncio.start_server(rst, env.host, 0)
        port = server.sockets[0].getsockname()[1]
        with env.client():
            reader, writer = await asyncio.open_connection(env.host, port)
        writer.write(b"x")
        await writer.drain()
        seen: list[Any] = []
        try:
            seen.append(await reader.read())
        except ConnectionError as e:
            seen.append(outcome(e))
        writer.write(b"dropped")  # no exception: asyncio drops it
        try:
            await writer.drain()
        except ConnectionError as e:
            seen.append(type(e).__name__)
        server.close()
        return seen

    assert both(snippet) == [
        ("ConnectionResetError", errno.ECONNRESET, "[Errno 104] Connection reset by peer"),
        "ConnectionResetError",
    ]


def test_handler_exception_reaches_the_loop_exception_handler() -> None:
    async def snippet(env: Env) -> Any:
        seen: list[str] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _l, ctx: seen.append(repr(ctx.get("exception"))))

        async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            raise ValueError("boom")

        with env.server():
            server = await asyncio.start_server(bad, env.host, 0)
        port = server.sockets[0].getsockname()[1]
        with env.client():
            _reader, writer = await asyncio.open_connection(env.host, port)
        writer.write(b"x")
        await writer.drain()
        for _ in range(50):
            await asyncio.sleep(0.02)
            gc.collect()
            if seen:
                break
        writer.close()
        server.close()
        return seen

    if sys.version_info < (3, 11, 7):  # asyncio's own reporting of it changed in 3.11.x
        pytest.xfail("compared against asyncio of Python 3.11.7 or later")
    assert both(snippet) == ["ValueError('boom')"]


def test_cancelled_connect_leaves_nothing_behind() -> None:
    async def main() -> Any:
        sw, (c, s) = await make_stacks()
        accepted: list[int] = []

        async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(1)
            writer.close()

        with aio.bind(s):
            server = await asyncio.start_server(count, None, 8080)
        with aio.bind(c):
            r, w = await asyncio.open_connection("10.0.0.2", 8080)  # ARP resolved
            await r.read()
            w.close()
            sw.partition(["s1"], ["s2"])
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.open_connection("10.0.0.2", 8080), 0.5)
            await asyncio.sleep(0.05)
            syn_sent = tcp.State.SYN_SENT
            left = [k for k, v in c.tcpv4().endpoint.connections.items() if v.state == syn_sent]
            sw.heal()
            await asyncio.sleep(3.5)  # past the SYN retries at 1 s and 3 s
        server.close()
        await c.disconnect()
        await s.disconnect()
        return left, len(accepted), s.tcpv4().stats.get("connections_opened")

    left, accepted, opened = aio.run(main())
    assert (left, accepted, opened) == ([], 1, 1)


def test_datagram_echo_between_stacks() -> None:
    async def snippet(env: Env) -> Any:
        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.t = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                cast(asyncio.DatagramTransport, self.t).sendto(data.upper(), addr)

        got: asyncio.Queue[bytes] = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                got.put_nowait(data)

        loop = asyncio.get_running_loop()
        with env.server():
            st, _ = await loop.create_datagram_endpoint(Echo, local_addr=(env.host, 0))
        port = st.get_extra_info("sockname")[1]
        with env.client():
            ct, _ = await loop.create_datagram_endpoint(Client, remote_addr=(env.host, port))
        out = []
        for word in (b"one", b"two"):
            ct.sendto(word)
            out.append(await asyncio.wait_for(got.get(), 5))
        ct.close()
        st.close()
        return out, ct.get_extra_info("peername") == (env.host, port)

    assert both(snippet) == ([b"ONE", b"TWO"], True)


def test_no_route_is_enetunreach_at_once_without_any_host() -> None:
    async def main() -> Any:
        _, (c, s) = await make_stacks()
        t0 = time.monotonic()
        with aio.bind(c), pytest.raises(OSError) as e:
            await asyncio.open_connection("192.168.77.1", 80)
        took = time.monotonic() - t0
        await c.disconnect()
        await s.disconnect()
        return e.value.errno, took

    code, took = aio.run(main())
    assert code == errno.ENETUNREACH and took < 0.5


@contextlib.contextmanager
def veth_namespace() -> Iterator[str]:
    """A namespace with 10.0.0.1/24 on a veth whose peer answers nobody's ARP."""
    from tests.netns import namespaces, sh

    with namespaces("unr") as (ns,):
        sh("ip", "-n", ns, "link", "add", "mk-va", "type", "veth", "peer", "name", "mk-vb")
        sh("ip", "-n", ns, "addr", "add", "10.0.0.1/24", "dev", "mk-va")
        sh("ip", "-n", ns, "link", "set", "mk-va", "up")
        sh("ip", "-n", ns, "link", "set", "mk-vb", "up")
        yield ns


async def connect_failures(env: Env, *dsts: str) -> list[tuple[int | None, int]]:
    """(errno, whole seconds taken) of a failed connect to each of ``dsts``, port 80."""
    out = []
    for dst in dsts:
        t0 = time.monotonic()
        with env.client():
            try:
                await asyncio.open_connection(dst, 80)
            except OSError as e:
                out.append((e.errno, round(time.monotonic() - t0)))
    return out


@pytest.mark.kernel
def test_unreachable_destinations_fail_as_on_linux() -> None:
    from miragekit.link._netns import in_netns

    async def snippet(env: Env) -> Any:
        return await connect_failures(env, "10.0.0.99", "192.168.77.1")

    with veth_namespace() as ns:
        host = in_netns(ns, lambda: on_host(snippet))
    ours = on_stacks(snippet)
    assert host == ours == [(errno.EHOSTUNREACH, 3), (errno.ENETUNREACH, 0)]


def sim_stack_loop(seed: int) -> asyncio.AbstractEventLoop:
    """``StackLoopMixin`` in front of ``miragekit.sim``'s virtual-time loop."""
    from miragekit.netloop import StackLoopMixin
    from miragekit.sim import SimLoop

    class SimStackLoop(StackLoopMixin, SimLoop):  # type: ignore[misc]
        pass

    return SimStackLoop(seed=seed)


def run_sim(main: Awaitable[T], seed: int) -> T:
    """``main`` on a fresh virtual-time stack loop; what is left running is cancelled."""
    loop = sim_stack_loop(seed)
    try:
        result = loop.run_until_complete(main)
        rest = asyncio.all_tasks(loop)
        for t in rest:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        return result
    finally:
        loop.close()


def test_the_mixin_goes_on_the_virtual_time_loop() -> None:
    """Asyncio streams between two stacks in virtual time (an hour of idle connection
    costs no wall time)."""

    async def main() -> tuple[bytes, float, int]:
        _, (c, s) = await make_stacks()
        with aio.bind(s):
            server = await asyncio.start_server(echo, None, 0)
        port = server.sockets[0].getsockname()[1]
        with aio.bind(c):
            reader, writer = await asyncio.open_connection("10.0.0.2", port)
        t0 = asyncio.get_running_loop().time()
        await asyncio.sleep(3600)
        writer.write(b"still there")
        got = await reader.readexactly(11)
        writer.close()
        server.close()
        await c.disconnect()
        await s.disconnect()
        return got, asyncio.get_running_loop().time() - t0, port

    wall = time.monotonic()
    runs = []
    for _ in range(2):
        runs.append(run_sim(main(), 7))
    assert runs[0][0] == b"still there" and 3600 <= runs[0][1] < 3601
    assert runs[0][2] == runs[1][2]  # the ephemeral port comes from the loop's seeded rng
    assert time.monotonic() - wall < 30


def test_run_with_a_stack_factory_binds_main() -> None:
    """``aio.run(main(), stack=factory)``: the stack is made on the new loop, ``main``
    runs bound to it (here serving and connecting to itself on 127.0.0.1)."""

    async def factory() -> DirectStackV4:
        _, (s,) = await make_stacks(1)
        return s

    async def main() -> tuple[bytes, str]:
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"bound")
        got = await reader.readexactly(5)
        writer.close()
        server.close()
        return got, type(asyncio.get_running_loop()).__name__

    assert aio.run(main(), stack=factory) == (b"bound", "StackEventLoop")


def test_unix_sockets_stay_the_base_loops(tmp_path: Path) -> None:
    """Unix sockets are local, not IP: they work on the stack loop with no stack bound."""

    async def main() -> bytes:
        path = str(tmp_path / "s.sock")
        server = await asyncio.start_unix_server(echo, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"local")
        got = await reader.readexactly(5)
        writer.close()
        server.close()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(a, b"pair")
            got += await loop.sock_recv(b, 4)
        return got

    assert aio.run(main()) == b"localpair"


def test_unanswered_syns_time_out_as_on_linux() -> None:
    """A peer that stops answering: ``TimeoutError(ETIMEDOUT)`` once the SYN retries give
    up (in virtual time, so the two minutes cost none)."""

    async def main() -> tuple[tuple[str, int | None], float]:
        sw, (c, s) = await make_stacks()
        with aio.bind(s):
            server = await asyncio.start_server(echo, None, 80)
        with aio.bind(c):
            _, w = await asyncio.open_connection("10.0.0.2", 80)  # ARP learns the peer
            w.close()
            sw.partition(["s1"], ["s2"])
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            try:
                await asyncio.open_connection("10.0.0.2", 80)
            except OSError as e:
                return (type(e).__name__, e.errno), loop.time() - t0
            finally:
                server.close()
        return ("connected", None), 0.0

    kind, took = run_sim(main(), 3)
    assert kind == ("TimeoutError", errno.ETIMEDOUT)
    assert 60 < took < 200
