"""``aio.bind`` on a loop that is not a stack loop: refused, since the calls it should
route would reach the host's sockets instead (a new user's ``asyncio.run`` + ``bind``)."""

from __future__ import annotations

import asyncio

import pytest

from miragekit import aio, sim, v1
from miragekit.link import VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static


async def a_stack() -> v1.StackV4:
    vif = VnetSwitch().add_interface("app")
    r = await DirectStackV4.connect(v1.StackConfig("app", None, vif, Static("10.0.0.2/24")))
    assert isinstance(r, Ok), r
    return r.value


async def bind_and_serve() -> str:
    stack = await a_stack()
    try:
        with aio.bind(stack):
            server = await asyncio.start_server(lambda r, w: None, "10.0.0.2", 8080)
            name = str(server.sockets[0].getsockname())
            server.close()
            return name
    finally:
        await stack.disconnect()


def test_bind_under_plain_asyncio_run_is_refused_naming_the_loop() -> None:
    with pytest.raises(RuntimeError, match=r"^bind: the running loop \(_UnixSelectorEventLoop\)"):
        asyncio.run(bind_and_serve())


def test_bind_under_sim_run_is_refused_too() -> None:
    with pytest.raises(RuntimeError, match=r"^bind: the running loop \(SimLoop\) is not a"):
        sim.run(bind_and_serve())


def test_bind_under_aio_run_serves_on_the_stack() -> None:
    # The host has no 10.0.0.2 (it would raise EADDRNOTAVAIL); the stack listens on all
    # its addresses.
    assert aio.run(bind_and_serve()) == "('0.0.0.0', 8080)"
