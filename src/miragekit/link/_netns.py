"""Entering a named network namespace for one call, without moving the process.

Why: a device's host resources (a UDP socket, a TAP fd) may have to live in another
network namespace than the process (``ip netns``), e.g. where the underlay is. Network
namespaces are per thread on Linux, and a socket stays in the namespace it was created
in; so the call runs on a fresh thread that enters the namespace and then exits.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import Final, TypeVar

CLONE_NEWNET: Final = 0x40000000
NETNS_DIR: Final = "/var/run/netns"

T = TypeVar("T")


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread that has entered network namespace ``name``.

    Network namespaces are per thread on Linux, and a socket stays in the namespace it was
    created in; the helper thread exits afterwards, so no thread of ours stays switched.
    """
    out: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({name}): {os.strerror(e)}")
            finally:
                os.close(fd)
            out.append(fn())
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=run, name=f"netns-{name}")
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]
