"""IPv6 destinations nobody answers fail as on Linux: ``EHOSTUNREACH`` once neighbour
discovery gives up on an on-link address (three solicitations a second apart), and
``ENETUNREACH`` at once when there is no route; the same snippet on host sockets in a
namespace and on our stack loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Iterator
from typing import Any

import pytest
from tests.test_netloop import Env, connect_failures, on_host

from miragekit import aio, v1
from miragekit.link import VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, IPv6Config, Static

ON_LINK_NOBODY = "fd00::99"
NO_ROUTE = "fd01::1"


async def snippet(env: Env) -> Any:
    return await connect_failures(env, ON_LINK_NOBODY, NO_ROUTE)


def on_v6_stack() -> Any:
    async def main() -> Any:
        sw = VnetSwitch(seed=1)
        cfg = v1.StackConfig("c", None, sw.add_interface("c"), Static("10.0.0.1/24"))
        r = await DirectStackV4.connect(cfg, ip6=IPv6Config(cidrs=["fd00::1/64"], slaac=False))
        assert isinstance(r, Ok), r
        stack = r.value
        try:
            async with asyncio.timeout(60):
                env = Env("fd00::1", contextlib.nullcontext, lambda: aio.bind(stack), sw, (stack,))
                return await snippet(env), stack.ipv6().ndp.counters.resolution_failed
        finally:
            await stack.disconnect()

    return aio.run(main())


@contextlib.contextmanager
def veth6_namespace() -> Iterator[str]:
    """A namespace with fd00::1/64 on a veth whose peer answers no solicitation (IPv6
    off there), and IPv6 on ``lo``, which carries the kernel's unreachable error to the
    socket."""
    from tests.netns import namespaces, sh

    with namespaces("un6") as (ns,):
        sh("ip", "-n", ns, "link", "add", "mk-va", "type", "veth", "peer", "name", "mk-vb")
        sysctl = ("ip", "netns", "exec", ns, "sysctl", "-qw")
        sh(*sysctl, "net.ipv6.conf.mk-va.disable_ipv6=0")
        sh(*sysctl, "net.ipv6.conf.lo.disable_ipv6=0")  # the kernel's ICMPv6 error to itself
        sh(*sysctl, "net.ipv6.conf.mk-vb.disable_ipv6=1")
        sh("ip", "-n", ns, "addr", "add", "fd00::1/64", "dev", "mk-va", "nodad")
        sh("ip", "-n", ns, "link", "set", "mk-va", "up")
        sh("ip", "-n", ns, "link", "set", "mk-vb", "up")
        yield ns


def test_unreachable_v6_destinations_on_our_stack() -> None:
    out, failed = on_v6_stack()
    assert out == [(errno.EHOSTUNREACH, 3), (errno.ENETUNREACH, 0)]
    assert failed == 1  # NDP gave up once: the no-route connect never solicited


@pytest.mark.kernel
def test_unreachable_v6_destinations_fail_as_on_linux() -> None:
    from miragekit.link._netns import in_netns

    with veth6_namespace() as ns:
        host = in_netns(ns, lambda: on_host(snippet))
    ours, _ = on_v6_stack()
    assert host == ours == [(errno.EHOSTUNREACH, 3), (errno.ENETUNREACH, 0)]
