"""TLS over a V1 TCP FLOW, with the standard library's ``ssl`` in memory.

An application written against STACKV4 gets TCP flows, not sockets; :func:`server` and
:func:`client` run the TLS handshake over such a flow through ``ssl.MemoryBIO`` and
``ssl.SSLObject`` and give back a :class:`TLSFlow`, itself a TCP FLOW carrying the
plaintext. So code that serves a flow (``examples/static_website``) serves HTTPS by
wrapping it first, whatever the stack underneath (host sockets or our own TCP/IP).

The context decides everything else: certificates, verification, SNI (a server context's
``sni_callback``), ALPN. Errors are values as everywhere in V1: a failed handshake is
``Error(Unknown(...))`` with the ``ssl`` library's reason, e.g.
``TLS handshake: [SSL: CERTIFICATE_VERIFY_FAILED] ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from typing import Generic

from . import v1
from .buffers import flat
from .result import EOF, Eof, Error, Ok, TCPError, Unknown
from .v1 import A

#: Plaintext bytes taken from the TLS layer per read (one TLS record holds at most 16 KiB).
READ_SIZE = 64 * 1024


class TLSFlow(Generic[A]):
    """A TCP FLOW whose bytes travel in TLS over another TCP FLOW (the one it wraps).

    ``close`` sends TLS's close_notify, then closes the flow underneath; a peer that
    closes without close_notify (common for HTTP clients) reads as the end of the flow.
    """

    def __init__(self, flow: v1.TCPFlow[A], obj: ssl.SSLObject, rx: ssl.MemoryBIO,
                 tx: ssl.MemoryBIO) -> None:  # fmt: skip
        self.flow: v1.TCPFlow[A] = flow
        self.ssl_object = obj
        self._rx = rx
        self._tx = tx
        self._sending = asyncio.Lock()  # reads and writes both produce TLS records
        self._closed = False

    def __repr__(self) -> str:
        return f"<TLSFlow {self.ssl_object.version()} over {self.flow!r}>"

    def get_dest(self) -> tuple[A, int]:
        return self.flow.get_dest()

    async def _flush(self, *, nodelay: bool = False) -> Eof | Error[TCPError] | None:
        """Send what the TLS layer has produced, in order, one sender at a time; records
        made while a send waits on back-pressure go out after it, in the same turn."""
        async with self._sending:
            while out := self._tx.read():
                if nodelay:
                    await self.flow.write_nodelay(out)
                    continue
                r = await self.flow.write(out)
                if not isinstance(r, Ok):
                    return r
            return None

    async def _fill(self) -> Eof | Error[TCPError] | None:
        """Feed the next bytes from the flow to the TLS layer (its EOF too)."""
        r = await self.flow.read()
        if isinstance(r, Ok):
            self._rx.write(r.value)
            return None
        self._rx.write_eof()
        return r

    async def read(self) -> Ok[memoryview] | Eof | Error[TCPError]:
        while True:
            if self._closed:
                return EOF
            try:
                data = self.ssl_object.read(READ_SIZE)
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return EOF  # close_notify, or a peer that just closed the TCP flow
            except ssl.SSLError as e:
                return Error(Unknown(f"TLS: {reason(e)}"))
            else:
                return Ok(memoryview(data)) if data else EOF
            if self._tx.pending and not self._sending.locked():
                # Post-handshake messages (key updates) the peer waits for; a sender
                # blocked on back-pressure sends them after its own records instead, as
                # waiting for it here could wait for the peer to read, and it for us.
                flushed = await self._flush()
                if flushed is not None:
                    return flushed
            got = await self._fill()
            if isinstance(got, Error):
                return got

    async def _send(self, bufs: v1.Buffers, *, nodelay: bool) -> Ok[None] | Eof | Error[TCPError]:
        if self._closed:
            return EOF
        data = flat(bufs[0]) if len(bufs) == 1 else b"".join(flat(b) for b in bufs)
        try:
            if len(data):
                self.ssl_object.write(data)  # one record (or more, past 16 KiB)
        except ssl.SSLError as e:
            return Error(Unknown(f"TLS: {reason(e)}"))
        r = await self._flush(nodelay=nodelay)
        return Ok(None) if r is None else r

    async def write(self, buf: v1.Buffer) -> Ok[None] | Eof | Error[TCPError]:
        return await self._send((buf,), nodelay=False)

    async def writev(self, bufs: v1.Buffers) -> Ok[None] | Eof | Error[TCPError]:
        return await self._send(bufs, nodelay=False)

    async def write_nodelay(self, buf: v1.Buffer) -> None:
        await self._send((buf,), nodelay=True)

    async def writev_nodelay(self, bufs: v1.Buffers) -> None:
        await self._send(bufs, nodelay=True)

    async def close(self) -> None:
        """close_notify, then the flow's own close (not waiting for the peer's)."""
        if self._closed:
            return
        self._closed = True
        if not self._sending.locked():  # else a write is blocked: closing must wake it
            with contextlib.suppress(ssl.SSLError):  # SSLWantReadError: the peer's
                self.ssl_object.unwrap()  # close_notify is not awaited
            await self._flush()
        await self.flow.close()

    def abort(self) -> None:
        """Reset the connection underneath (when the flow can), without close_notify."""
        self._closed = True
        abort = getattr(self.flow, "abort", None)
        if abort is not None:
            abort()


def describe(e: TCPError) -> str:
    """A TCP error in words (its ``msg`` when it has one)."""
    return getattr(e, "msg", None) or type(e).__name__.lower()


def reason(e: ssl.SSLError) -> str:
    """``ssl``'s own text of an error (``[SSL: ...] ... (_ssl.c:NNN)``), or its class."""
    if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
        return f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {e.verify_message}"
    return str(e) or type(e).__name__


async def _handshake(
    flow: v1.TCPFlow[A], ctx: ssl.SSLContext, *, server_side: bool, server_hostname: str | None
) -> Ok[TLSFlow[A]] | Error[Unknown]:
    rx, tx = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        obj = ctx.wrap_bio(rx, tx, server_side=server_side, server_hostname=server_hostname)
    except (ValueError, ssl.SSLError) as e:
        return Error(Unknown(f"TLS: {e}"))
    tls = TLSFlow(flow, obj, rx, tx)
    while True:
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as e:
            await tls._flush()  # the alert, so the peer learns why
            return Error(Unknown(f"TLS handshake: {reason(e)}"))
        else:
            if await tls._flush() is not None:
                return Error(Unknown("TLS handshake: the connection ended"))
            return Ok(tls)
        if await tls._flush() is not None:
            return Error(Unknown("TLS handshake: the connection ended"))
        got = await tls._fill()
        if isinstance(got, Error):
            return Error(Unknown(f"TLS handshake: {describe(got.error)}"))


async def server(flow: v1.TCPFlow[A], ctx: ssl.SSLContext) -> Ok[TLSFlow[A]] | Error[Unknown]:
    """The server's side of a handshake over ``flow`` (an accepted connection)."""
    return await _handshake(flow, ctx, server_side=True, server_hostname=None)


async def client(
    flow: v1.TCPFlow[A], ctx: ssl.SSLContext, server_hostname: str | None = None
) -> Ok[TLSFlow[A]] | Error[Unknown]:
    """The client's side: ``server_hostname`` goes in SNI and, when the context checks
    host names, must be in the server's certificate."""
    return await _handshake(flow, ctx, server_side=False, server_hostname=server_hostname)


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """A server context from a certificate (chain) file and its private key file.

    ``ValueError`` with a one-line reason when a file is missing or the two do not make a
    pair (or are not PEM certificates and keys)."""
    for path in (cert, key):
        if not os.path.isfile(path):
            there = "is not a file" if os.path.exists(path) else "no such file"
            raise ValueError(f"{os.fsdecode(path)}: {there}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:  # (an OSError too)
        mismatch = "KEY_VALUES_MISMATCH" in str(e)
        why = (
            "the key does not match the certificate"
            if mismatch
            else "not a PEM certificate and its private key"
        )
        raise ValueError(f"{os.fsdecode(cert)},{os.fsdecode(key)}: {why}") from None
    except OSError as e:
        raise ValueError(f"{e.filename or os.fsdecode(cert)}: {e.strerror or e}") from None
    return ctx
