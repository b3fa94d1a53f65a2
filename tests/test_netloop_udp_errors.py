"""A connected datagram endpoint hears of a closed port at its peer through
``error_received(ConnectionRefusedError)``, as on a connected Linux UDP socket; an
unconnected one hears nothing (no IP_RECVERR). A connected endpoint's names are a
connected socket's: its peer's 4-tuple over IPv6, the source address it uses. Checked
against host sockets."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from tests.test_netloop import Env, both, on_host

from miragekit import aio, v1
from miragekit.link import VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, IPv6Config, Static


async def refused_or_not(env: Env) -> Any:
    errors: asyncio.Queue[tuple[str, Exception]] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def __init__(self, name: str) -> None:
            self.name = name

        def error_received(self, exc: Exception) -> None:
            errors.put_nowait((self.name, exc))

    loop = asyncio.get_running_loop()
    with env.server():  # a free port, then nobody on it
        st, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(env.host, 0)
        )
    port = st.get_extra_info("sockname")[1]
    st.close()
    await asyncio.sleep(0.1)
    with env.client():
        loose, _ = await loop.create_datagram_endpoint(
            lambda: Client("unconnected"), local_addr=("::" if ":" in env.host else "0.0.0.0", 0)
        )
        tied, _ = await loop.create_datagram_endpoint(
            lambda: Client("connected"), remote_addr=(env.host, port)
        )
    loose.sendto(b"anyone?", (env.host, port))
    await asyncio.sleep(0.3)
    tied.sendto(b"anyone?")
    name, exc = await asyncio.wait_for(errors.get(), 5)
    await asyncio.sleep(0.3)
    loose.close()
    tied.close()
    return name, type(exc).__name__, getattr(exc, "errno", None), errors.qsize()


def test_a_closed_port_is_refused_to_a_connected_endpoint_only() -> None:
    assert both(refused_or_not) == ("connected", "ConnectionRefusedError", 111, 0)


async def dual_stacks(n: int) -> list[DirectStackV4]:
    sw = VnetSwitch(seed=1)
    out = []
    for i in range(1, n + 1):
        cfg = v1.StackConfig(f"s{i}", None, sw.add_interface(f"s{i}"), Static(f"10.0.0.{i}/24"))
        r = await DirectStackV4.connect(cfg, ip6=IPv6Config(cidrs=[f"fd00::{i}/64"], slaac=False))
        assert isinstance(r, Ok), r
        out.append(r.value)
    return out


def test_the_same_over_ipv6_between_two_stacks() -> None:
    async def on_two_stacks() -> Any:
        c, s = await dual_stacks(2)
        try:
            env = Env("fd00::2", lambda: aio.bind(s), lambda: aio.bind(c))
            return await refused_or_not(env)
        finally:
            await c.disconnect()
            await s.disconnect()

    host = on_host(
        lambda env: refused_or_not(Env("::1", contextlib.nullcontext, contextlib.nullcontext))
    )
    assert aio.run(on_two_stacks()) == host == ("connected", "ConnectionRefusedError", 111, 0)


@pytest.mark.parametrize("loopback", ["127.0.0.1", "127.0.0.5", "::1"])
def test_the_same_inside_one_stack_over_loopback(loopback: str) -> None:
    async def on_one_stack() -> Any:
        (stack,) = await dual_stacks(1)
        try:
            env = Env(loopback, lambda: aio.bind(stack), lambda: aio.bind(stack))
            return await refused_or_not(env)
        finally:
            await stack.disconnect()

    host = on_host(
        lambda env: refused_or_not(Env(loopback, contextlib.nullcontext, contextlib.nullcontext))
    )
    assert aio.run(on_one_stack()) == host == ("connected", "ConnectionRefusedError", 111, 0)


def test_a_connected_ipv6_endpoint_names_its_peer_with_a_4_tuple() -> None:
    async def peer(env: Env) -> Any:
        loop = asyncio.get_running_loop()
        with env.client():
            t, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(env.host, 54)
            )
        out = t.get_extra_info("peername"), t.get_extra_info("socket").getpeername()
        t.close()
        return out

    async def on_one_stack() -> Any:
        (stack,) = await dual_stacks(1)
        try:
            return await peer(Env("::1", lambda: aio.bind(stack), lambda: aio.bind(stack)))
        finally:
            await stack.disconnect()

    host = on_host(lambda env: peer(Env("::1", contextlib.nullcontext, contextlib.nullcontext)))
    assert aio.run(on_one_stack()) == host == (("::1", 54, 0, 0),) * 2


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1"])
def test_a_connected_endpoint_names_the_source_address_it_uses(peer: str) -> None:
    async def names(env: Env) -> Any:
        loop = asyncio.get_running_loop()
        with env.client():
            t, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(env.host, 54)
            )
        out = t.get_extra_info("sockname")[0], t.get_extra_info("socket").getsockname()[0]
        t.close()
        return out

    async def on_one_stack() -> Any:
        (stack,) = await dual_stacks(1)
        try:
            return await names(Env(peer, lambda: aio.bind(stack), lambda: aio.bind(stack)))
        finally:
            await stack.disconnect()

    host = on_host(lambda env: names(Env(peer, contextlib.nullcontext, contextlib.nullcontext)))
    assert aio.run(on_one_stack()) == host == (peer, peer)  # not the wildcard address
