"""TLS over a stack's transports with the standard library's ``ssl``: asyncio's own TLS
protocol (``asyncio.sslproto.SSLProtocol``) sits between the transport and the
application's protocol, as on a host socket.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from asyncio import sslproto
from typing import Any


def context_for(sslarg: Any, *, server_side: bool, server_hostname: str | None) -> Any:
    """The ``SSLContext`` for ``ssl=``: ``True`` on a client means the default one."""
    if isinstance(sslarg, ssl_module.SSLContext):
        return sslarg
    if server_side:
        raise ValueError("Server side SSL needs a valid SSLContext")
    ctx = ssl_module.create_default_context()
    if not server_hostname:
        ctx.check_hostname = False
    return ctx


def tls_protocol(
    loop: asyncio.AbstractEventLoop,
    app_protocol: asyncio.BaseProtocol,
    sslarg: Any,
    waiter: asyncio.Future[None],
    *,
    server_side: bool,
    server_hostname: str | None,
    handshake_timeout: float | None,
    shutdown_timeout: float | None,
) -> sslproto.SSLProtocol:
    """asyncio's TLS protocol around ``app_protocol``; ``waiter`` completes after the
    handshake (or fails with its error, e.g. ``ssl.SSLCertVerificationError``)."""
    ctx = context_for(sslarg, server_side=server_side, server_hostname=server_hostname)
    return sslproto.SSLProtocol(
        loop,
        app_protocol,
        ctx,
        waiter,
        server_side,
        server_hostname,
        ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]
        ssl_shutdown_timeout=shutdown_timeout,
    )
