"""Kernel test helpers: a TAP device whose kernel side lives in a ``mk-`` namespace.

The TAP device is created and opened in the root namespace, then moved into a fresh
namespace ``mk-<hex>`` (the open fd stays attached): the kernel side is 10.77.0.1/24.
The namespace and the device are always deleted; tests get one from the ``knet``
fixture (registered for all tests in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.netns import ns_exec, require_root, sh, tag

T = TypeVar("T")
KERNEL_IP = "10.77.0.1"
OUR_IP = "10.77.0.2"


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coro`` on a fresh event loop from a synchronous test."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@dataclass
class KernelNet:
    ns: str
    tap: str

    def move_in(self) -> None:
        """Move the (already opened) TAP into the namespace and configure the kernel side."""
        sh("ip", "link", "set", self.tap, "netns", self.ns)
        sh("ip", "-n", self.ns, "addr", "add", f"{KERNEL_IP}/24", "dev", self.tap)
        sh("ip", "-n", self.ns, "link", "set", self.tap, "up")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")

    async def exec(
        self, *args: str, stdin: bytes | None = None, timeout: float = 20.0
    ) -> tuple[int, bytes]:
        """Run ``args`` in the namespace; (return code, stdout+stderr)."""
        return await ns_exec(self.ns, *args, stdin=stdin, timeout=timeout)


@contextmanager
def kernel_net() -> Iterator[KernelNet]:
    """A fresh ``mk-`` namespace and a TAP device (not yet moved in); always deleted."""
    require_root()
    t = tag()
    k = KernelNet(ns=f"mk-{t}", tap=f"mk-t{t}")
    sh("ip", "netns", "add", k.ns)
    try:
        # Quiet the kernel side: no IPv6 router solicitations, no DAD.
        sh("ip", "netns", "exec", k.ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "netns", "exec", k.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "tuntap", "add", "mode", "tap", "name", k.tap)
        yield k
    finally:
        subprocess.run(["ip", "netns", "del", k.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", k.tap], capture_output=True)


@pytest.fixture
def knet() -> Iterator[KernelNet]:
    """A TAP device and a fresh ``mk-`` namespace for its kernel side."""
    with kernel_net() as k:
        yield k


async def socat_receives(
    k: KernelNet,
    connect: Callable[[], Awaitable[Any]],
    payload: bytes,
    dst: Path,
    listen: str = "TCP-LISTEN",
) -> Any:
    """A socat in the namespace listens on port 9000 (``listen``: ``TCP6-LISTEN`` for
    IPv6) and writes what it gets to ``dst``; ``connect()`` (retried while socat is not
    yet listening) opens our flow to it, and ``payload`` goes through in 1 MiB writes,
    then close. Checks ``dst`` byte-exact; returns the (closed) flow."""
    from miragekit.result import Error, Ok, Refused

    mb = 1 << 20
    server = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", k.ns, "socat", "-u", f"{listen}:9000,reuseaddr", f"CREATE:{dst}"
    )  # fmt: skip
    try:
        for _ in range(100):
            r = await connect()
            if isinstance(r, Ok):
                break
            assert r == Error(Refused())
            await asyncio.sleep(0.05)  # socat is not listening yet
        assert isinstance(r, Ok), r
        flow = r.value
        view = memoryview(payload)
        for i in range(0, len(payload), mb):
            assert await flow.write(view[i : i + mb]) == Ok(None)
        await flow.close()
        assert await asyncio.wait_for(server.wait(), 120) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(payload).digest()
    return flow


async def direct_on_tap(
    k: KernelNet,
    body: Callable[[Any, Any], Awaitable[None]],
    *,
    sysctls: Sequence[str] = (),
    offload: bool = False,
    wrap: Callable[[Any], Any] | None = None,
    tcp_config: Any = None,
) -> None:
    """Our ``DirectStackV4`` at OUR_IP on the TAP, whose kernel side gets ``sysctls``
    (``name=value``) once the TAP is in its namespace; ``wrap`` puts a device around the
    TAP (an ``ImpairedLink``). Runs ``body(stack, device)``, checks the driver had no
    internal error, and disconnects everything."""
    from miragekit.link import TapNetif
    from miragekit.result import Ok
    from miragekit.stack import DirectStackV4, Static
    from miragekit.v1 import StackConfig

    r = await TapNetif.connect(k.tap, offload=offload)
    assert isinstance(r, Ok), r
    k.move_in()
    for setting in sysctls:
        sh("ip", "netns", "exec", k.ns, "sysctl", "-qw", setting)
    dev = wrap(r.value) if wrap is not None else r.value
    s = await DirectStackV4.connect(
        StackConfig("tap", None, dev, Static(f"{OUR_IP}/24")), tcp_config=tcp_config
    )
    assert isinstance(s, Ok), s
    stack = s.value
    try:
        await body(stack, dev)
        assert stack.tcpv4().internal_errors == 0
    finally:
        await stack.disconnect()
        await dev.disconnect()
