"""A TAP device moved into a fresh network namespace ``mk-<hex>``: the kernel side.

The TAP is created and opened in the root namespace, then moved into the namespace (the
open fd stays attached) where the kernel's own tools talk to our stack. Shared by the
IPv4 and IPv6 kernel tests; the fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coro`` on a fresh event loop from a synchronous test."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class KernelNet:
    ns: str
    tap: str
    addrs: list[str] = field(default_factory=list)  # the kernel side's, as for `ip addr add`

    def move_in(self) -> None:
        """Move the (already opened) TAP into the namespace and configure the kernel side."""
        sh("ip", "link", "set", self.tap, "netns", self.ns)
        for a in self.addrs:
            extra = ("nodad",) if ":" in a else ()
            sh("ip", "-n", self.ns, "addr", "add", a, "dev", self.tap, *extra)
        sh("ip", "-n", self.ns, "link", "set", self.tap, "up")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")

    def sysctl(self, setting: str) -> None:
        sh("ip", "netns", "exec", self.ns, "sysctl", "-qw", setting)

    async def exec(
        self, *args: str, stdin: bytes | None = None, timeout: float = 20.0
    ) -> tuple[int, bytes]:
        """Run ``args`` in the namespace; (return code, stdout+stderr)."""
        p = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            self.ns,
            *args,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(p.communicate(stdin), timeout)
        assert p.returncode is not None
        return p.returncode, out


@contextmanager
def kernel_net(addrs: list[str], *, ipv6: bool) -> Iterator[KernelNet]:
    """A namespace and a TAP (not yet moved in), both always deleted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (run as root, as CI does)")
    tag = uuid.uuid4().hex[:8]
    k = KernelNet(ns=f"mk-{tag}", tap=f"mk-t{tag}", addrs=addrs)
    sh("ip", "netns", "add", k.ns)
    try:
        if not ipv6:  # quiet the kernel side: no router solicitations, no DAD
            k.sysctl("net.ipv6.conf.default.disable_ipv6=1")
            k.sysctl("net.ipv6.conf.all.disable_ipv6=1")
        else:  # IPv6 without waiting for the kernel's own DAD
            k.sysctl("net.ipv6.conf.default.accept_dad=0")
            k.sysctl("net.ipv6.conf.all.accept_dad=0")
        sh("ip", "tuntap", "add", "mode", "tap", "name", k.tap)
        yield k
    finally:
        subprocess.run(["ip", "netns", "del", k.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", k.tap], capture_output=True)
