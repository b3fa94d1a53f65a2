"""The exceptions asyncio raises, errno and text as the host's sockets give them."""

from __future__ import annotations

import errno
import os

from ..result import Refused, Timeout


def os_error(code: int) -> OSError:
    """The ``OSError`` subclass for ``code`` with the C library's text, as a failed
    socket call raises it (``ConnectionResetError(104, 'Connection reset by peer')``)."""
    return OSError(code, os.strerror(code))


def flow_error(err: object) -> OSError:
    """A TCP flow's error value as the exception a socket would raise."""
    if isinstance(err, Timeout):
        return os_error(errno.ETIMEDOUT)
    if isinstance(err, Refused):
        return os_error(errno.ECONNREFUSED)
    return os_error(errno.ECONNRESET)


def connect_failed(code: int, address: tuple[str, int]) -> OSError:
    """A connect that failed after it started, as asyncio reports it:
    ``[Errno 111] Connect call failed ('10.0.0.2', 80)``."""
    return OSError(code, f"Connect call failed {address}")
