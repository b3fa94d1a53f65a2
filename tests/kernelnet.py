"""Kernel test helpers: a TAP device whose kernel side lives in a ``mk-`` namespace.

The TAP device is created and opened in the root namespace, then moved into a fresh
namespace ``mk-<hex>`` (the open fd stays attached): the kernel side is 10.77.0.1/24.
The namespace and the device are always deleted; tests get one from the ``knet``
fixture (registered for all tests in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
