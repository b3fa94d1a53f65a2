"""Network namespaces for kernel tests: named ``mk-<unique>``, always deleted.

Shared by the kernel tests of every area (a helper module rather than copies).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from miragekit.link._netns import in_netns

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (run as root, as CI does)")


def sh(*args: str) -> None:
    """Run a command; raise with its output when it fails."""
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")


def tag() -> str:
    return uuid.uuid4().hex[:8]


@contextmanager
def namespaces(*suffixes: str) -> Iterator[list[str]]:
    """Fresh namespaces ``mk-<tag>-<suffix>`` with ``lo`` up and IPv6 off (no router
    solicitations, no DAD noise); deleted on exit whatever happened."""
    require_root()
    t = tag()
    names = [f"mk-{t}-{s}" for s in suffixes]
    made: list[str] = []
    try:
        for ns in names:
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


async def ns_exec(
    ns: str, *args: str, stdin: bytes | None = None, timeout: float = 20.0
) -> tuple[int, bytes]:
    """Run ``args`` in namespace ``ns``; (return code, stdout+stderr)."""
    p = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        ns,
        *args,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(p.communicate(stdin), timeout)
    except TimeoutError:
        p.kill()
        await p.wait()
        raise
    assert p.returncode is not None
    return p.returncode, out


def set_tx_checksum(ns: str, ifname: str, on: bool) -> None:
    """``ethtool -K IFNAME tx on|off`` in namespace ``ns``, without needing ethtool.

    Why: a kernel device with transmit checksum offload (veth, vxlan on veth) leaves
    checksums unfinished (only the pseudo-header sum) on packets that never reach real
    hardware. Tunnelled in VXLAN to a userspace socket, those inner checksums arrive as
    they are; turning the offload off makes the kernel finish them, as a NIC would.
    """

    def do() -> None:
        val = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, int(on)), 8)
        ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(val)).ljust(40, b"\0")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)

    in_netns(ns, do)
