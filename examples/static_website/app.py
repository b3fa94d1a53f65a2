"""static_website: HTTP/1.1 on port 80 (and HTTPS on 443) serving a KV_RO store, with h11.

h11 is sans-I/O: it turns bytes into requests and responses into bytes, and this module
moves those bytes over the stack's TCP flow, as they are. A plain keep-alive GET of a
small file is answered with the head h11 writes for it (made by h11 once per file) and
the body in one write, and h11 starts afresh for the next request: the wire is h11's,
for a quarter less CPU. The same code serves from the host's sockets (``--net
socket``) or from miragekit's own TCP/IP (``--net vnet`` or ``--net tap``, reached
from the host with ``--forward 8080:80``).

What it does: persistent connections (HTTP/1.1 keep-alive), GET and HEAD, ``/`` and
``dir/`` as ``index.html``, ``dir`` redirected to ``dir/``, content types from the file
name, 404 for what the store does not hold, 405 for other methods, 400 (or h11's hint)
for malformed requests; a connection silent for ``IDLE_TIMEOUT`` is closed. Bodies are
streamed from the store in 64 KiB pieces, so a large file never sits whole in memory,
and each piece waits for the flow to take the previous one (back-pressure). One line
per request goes to the console (the lines of one turn of the event loop in one write).

With ``--tls CERT,KEY`` the runner hands ``start`` a TLS server context, and the same
sessions are served on port 443 over :mod:`miragekit.tls` (TLS over the stack's TCP flow,
the standard library's ``ssl`` in memory) beside plain HTTP on port 80. A client whose
handshake fails (it does not trust the certificate) costs one console line.
"""

from __future__ import annotations

import asyncio
import functools
import mimetypes
import re
import ssl
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import h11

from miragekit import tls as mtls
from miragekit import v1
from miragekit.result import Eof, Error, Ok

HTTP_PORT = 80
HTTPS_PORT = 443
CHUNK = 64 * 1024
SERVER = b"miragekit-static"
MAX_HEAD = 16 * 1024  # request line and headers
IDLE_TIMEOUT = 60.0  # seconds a client may stay silent (between requests or within one)
_TYPES = mimetypes.MimeTypes()  # the standard library's table only: the same on every host
_TEXTUAL = ("application/javascript", "application/json", "image/svg+xml", "application/xml")


_BYTES_REPR = re.compile(r"(?:bytearray\()?b(['\"])(.*?)\1\)?")


def plain(why: str) -> str:
    """h11's messages quote the offending bytes as Python reprs (``bytearray(b'...')``);
    a peer gets the bytes' text instead, in single quotes."""
    return _BYTES_REPR.sub(lambda m: f"'{m.group(2)}'", why)


@functools.lru_cache(maxsize=1024)
def content_type(key: str) -> bytes:
    ctype, _ = _TYPES.guess_type(key, strict=False)
    if ctype is None:
        return b"application/octet-stream"
    if ctype.startswith("text/") or ctype in _TEXTUAL:
        ctype += "; charset=utf-8"
    return ctype.encode()


@functools.lru_cache(maxsize=64)
def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


@functools.lru_cache(maxsize=1024)  # a site is asked for the same few targets
def key_for(target: bytes) -> str | None:
    """The store key a request target names, or None if it can name none (-> 404).

    ``/`` and ``a/`` name ``index.html`` in that directory; ``..`` names nothing.
    """
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return None
    path = urlsplit(text).path if not text.startswith("/") else text.split("?", 1)[0]
    path = unquote(path.split("#", 1)[0], errors="strict") if path else ""
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        return None
    if path.endswith("/"):
        path += "index.html"
    return path.lstrip("/")


class LineLog:
    """The request lines for the console, written together once per turn of the event
    loop: a console write per line cost a system call per request (~12 µs here, an
    eighth of a small response's CPU). Order is kept; output faults lose lines, as
    ``log_s`` does."""

    def __init__(self, console: v1.Console) -> None:
        self.console = console
        self.pending: list[str] = []
        self.writer: asyncio.Task[None] | None = None

    def add(self, line: str) -> None:
        self.pending.append(line)
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self.pending:
                lines, self.pending = self.pending, []
                await self.console.log_s("\r\n".join(lines))  # log_s ends the last one
        finally:
            self.writer = None


class Closed(Exception):
    """The flow failed or was closed under a write: nothing more can be answered."""


@functools.lru_cache(maxsize=256)
def ok_response(ctype: bytes, length: int) -> h11.Response:
    """The 200 head for a body of ``ctype`` and ``length``: h11's events are immutable,
    so one serves every request for the same file (validating the headers once)."""
    return Session.response(200, Session.headers(ctype, length))


@functools.lru_cache(maxsize=256)
def ok_head(ctype: bytes, length: int) -> bytes:
    """The bytes h11 writes for :func:`ok_response` answering a keep-alive HTTP/1.1
    GET, made by h11 itself once per file (so the fast path's wire is h11's)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    conn.next_event()
    return conn.send(ok_response(ctype, length)) or b""


# Request headers after which h11 might answer differently from ok_head (close the
# connection, expect a body, switch protocols): such requests take h11's own way.
_NOT_PLAIN = frozenset(
    (b"connection", b"content-length", b"transfer-encoding", b"upgrade", b"expect")
)


def plain_get(req: h11.Request) -> bool:
    """A keep-alive HTTP/1.1 GET without a body: h11's answer to it is ok_head and the
    body, and its next event is the end of the request."""
    if req.method != b"GET" or req.http_version != b"1.1":
        return False
    for name, value in req.headers:
        if name in _NOT_PLAIN and not (name == b"connection" and value.lower() == b"keep-alive"):
            return False
    return True


class Session:
    """One client connection: read requests, answer each, until either side closes.

    Bytes go between h11 and the flow as they are, the way a plain asyncio server
    does it (``bench/http.py`` measures the example beside one): one flow read per
    arrival, and a response's head and a small body in one flow write.
    """

    def __init__(
        self,
        flow: v1.TCPFlow[Any],
        kv: v1.KVRO,
        console: v1.Console,
        lines: LineLog | None = None,
    ) -> None:
        """``flow``: the TCP flow, or a :class:`miragekit.tls.TLSFlow` over it."""
        self.flow = flow
        self.kv = kv
        self.console = console
        self.lines = lines if lines is not None else LineLog(console)
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        ip, _port = flow.get_dest()
        self.peer = str(ip)
        # The idle timeout: one timer per IDLE_TIMEOUT and connection, moved on lazily
        # (a timer per read cost a handle, a heap entry and a cancel per request).
        self._reading_since: float | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._expired = False
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[Any] | None = None
        self._empty = False  # self.conn was started afresh and has received nothing

    async def next_event(self) -> Any:
        conn = self.conn
        while True:
            if self._empty:  # a fresh h11 connection with nothing in it: it needs data
                self._empty = False
            else:
                ev = conn.next_event()
                if ev is not h11.NEED_DATA:
                    return ev
            data = await self.read_some()
            if data is None:
                return h11.ConnectionClosed()  # an idle keep-alive connection: close it
            conn.receive_data(bytes(data))  # b"" at the end of the flow

    async def read_some(self) -> memoryview | bytes | None:
        """The flow's next bytes (``b""`` at its end); ``None`` after IDLE_TIMEOUT of
        silence. A failed read raises :class:`Closed`."""
        task = self._task
        if task is None:
            self._task = task = asyncio.current_task()
            assert task is not None
        self._reading_since = since = self._loop.time()
        if self._watch is None:
            self._watch = self._loop.call_at(since + IDLE_TIMEOUT, self._idle_check, task)
        cancelling = task.cancelling()
        try:
            r = await self.flow.read()
        except asyncio.CancelledError:
            if self._expired and task.uncancel() <= cancelling:
                return None  # our own cancellation, as asyncio.timeout tells them apart
            raise
        finally:
            self._reading_since = None
        if isinstance(r, Ok):
            return r.value
        if isinstance(r, Eof):
            return b""
        raise Closed(r.error)

    def _idle_check(self, task: asyncio.Task[Any]) -> None:
        self._watch = None
        since = self._reading_since
        if since is None:
            return  # answering a request: the next read arms the timer again
        loop = self._loop
        if loop.time() - since >= IDLE_TIMEOUT:
            self._expired = True
            task.cancel()
        else:
            self._watch = loop.call_at(since + IDLE_TIMEOUT, self._idle_check, task)

    async def write(self, data: bytes) -> None:
        """``data`` to the flow (waiting while it is full); :class:`Closed` if it fails."""
        r = await self.flow.write(data)
        if not isinstance(r, Ok):
            raise Closed(r)

    async def send(self, *events: Any) -> None:
        """``events`` serialised, in one flow write."""
        send = self.conn.send
        await self.write(b"".join([send(ev) or b"" for ev in events]))

    async def serve(self) -> None:
        try:
            while True:
                conn = self.conn
                try:
                    ev = await self.next_event()
                except h11.RemoteProtocolError as e:
                    await self.refuse(e.error_status_hint, plain(str(e)))
                    return
                if isinstance(ev, h11.Request):
                    if not await self.respond(ev):
                        return
                elif isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
                    return
                # Data and EndOfMessage of a request body are read and dropped.
                if conn.our_state is h11.MUST_CLOSE:
                    return
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
        except Closed:
            return  # the peer reset or went away: nothing to answer
        finally:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            await self.flow.close()

    async def refuse(self, status: int, why: str) -> None:
        """Answer a malformed request (when h11 still lets us) and close."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{status} bad request: {why}\n".encode()
        self.log("-", "-", status, len(body))
        await self.send(
            self.response(status, self.headers(b"text/plain", len(body), True)),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )

    @staticmethod
    def response(status: int, headers: list[tuple[bytes, bytes]]) -> h11.Response:
        return h11.Response(status_code=status, headers=headers, reason=reason(status))

    @staticmethod
    def headers(ctype: bytes, length: int, close: bool = False) -> list[tuple[bytes, bytes]]:
        h = [
            (b"server", SERVER),
            (b"content-type", ctype),
            (b"content-length", str(length).encode()),
        ]
        if close:
            h.append((b"connection", b"close"))
        return h

    def log(self, method: str, target: str, status: int, length: int) -> None:
        self.lines.add(f'{self.peer} "{method} {target}" {status} {length}')

    async def respond(self, req: h11.Request) -> bool:
        """Answer ``req``; False if the connection cannot go on (a body was cut short)."""
        method = req.method.decode("ascii", "replace")
        target = req.target.decode("ascii", "replace")
        head = req.method == b"HEAD"
        if req.method not in (b"GET", b"HEAD"):
            return await self.small(method, target, 405, b"method not allowed\n", head, allow=True)
        key = key_for(req.target)
        first: list[memoryview] = []
        if key is None:
            size: Ok[int] | Error[Any] | None = None
        elif head:
            size = await self.kv.size(key)
        else:
            # A GET reads the first piece at once: fewer bytes than asked are the whole
            # value, so a small file costs one store call (its size and its bytes).
            r = await self.kv.read(key, 0, CHUNK)
            if isinstance(r, Ok):
                first = r.value
                got = sum(p.nbytes for p in first)
                size = Ok(got) if got < CHUNK else await self.kv.size(key)
            else:
                size = r
        if not isinstance(size, Ok):
            if key and not target.endswith("/"):
                index = await self.kv.size(f"{key}/index.html")
                if isinstance(index, Ok):
                    path = target.split("?", 1)[0] + "/"
                    return await self.small(method, target, 301, b"", head, location=path)
            return await self.small(method, target, 404, b"not found\n", head)
        assert key is not None
        length = size.value
        self.log(method, target, 200, length)
        if first and length < CHUNK and plain_get(req) and self.finish_request():
            # The whole small file in hand and a plain keep-alive GET: the head h11
            # would write, cached, and the body, in one write; h11 starts afresh.
            await self.write(b"".join([ok_head(content_type(key), length), *first]))
            return True
        send = self.conn.send
        out = [send(ok_response(content_type(key), length))]
        if head:
            out.append(send(h11.EndOfMessage()))
            await self.write(b"".join(out))
            return True
        return await self.stream(key, length, out, first)

    def finish_request(self) -> bool:
        """Take the request's end from h11 and go on with a fresh h11 connection that
        holds the bytes received after it (a pipelined request): the answer is then
        written without h11, which costs a quarter of a small response's CPU otherwise
        (its state machine once per event, the head's headers validated twice)."""
        conn = self.conn
        if type(conn.next_event()) is not h11.EndOfMessage:
            return False  # not for plain_get requests; h11's way still holds
        data, closed = conn.trailing_data
        fresh = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        if data:
            fresh.receive_data(data)
        if closed:
            fresh.receive_data(b"")
        self.conn = fresh
        self._empty = not data and not closed
        return True

    async def stream(
        self, key: str, length: int, out: list[bytes], first: list[memoryview]
    ) -> bool:
        """The body after the head in ``out``: ``first`` (read already), then pieces of
        CHUNK read from the store, each written before the next is read (the flow's
        back-pressure). The head leaves with the first piece: one write, one segment
        for a small file."""
        send = self.conn.send
        off = 0
        pieces = first
        while True:
            got = 0
            for piece in pieces:
                n = piece.nbytes
                if n:
                    if off + got + n > length:  # changed since its size: keep the promise
                        piece = piece[: length - off - got]
                        n = piece.nbytes
                    out.append(send(h11.Data(data=bytes(piece))))
                    got += n
            off += got
            if off >= length:
                out.append(send(h11.EndOfMessage()))
                await self.write(b"".join(out))
                return True
            if out:
                await self.write(b"".join(out))
                out = []
            if got == 0:
                return False  # the value shrank: the promised length cannot be kept
            r = await self.kv.read(key, off, min(CHUNK, length - off))
            if not isinstance(r, Ok):
                return False
            pieces = r.value

    async def small(
        self,
        method: str,
        target: str,
        status: int,
        body: bytes,
        head: bool,
        *,
        allow: bool = False,
        location: str | None = None,
    ) -> bool:
        headers = self.headers(b"text/plain; charset=utf-8", len(body))
        if allow:
            headers.append((b"allow", b"GET, HEAD"))
        if location is not None:
            headers.append((b"location", location.encode("ascii", "replace")))
        self.log(method, target, status, len(body))
        events: list[Any] = [self.response(status, headers)]
        if body and not head:
            events.append(h11.Data(data=body))
        await self.send(*events, h11.EndOfMessage())
        return True


async def start(
    console: v1.Console, stack: v1.StackV4, kv: v1.KVRO, tls: ssl.SSLContext | None = None
) -> None:
    lines = LineLog(console)

    async def on_connection(flow: v1.TCPFlow[Any]) -> None:
        await Session(flow, kv, console, lines).serve()

    async def on_tls_connection(flow: v1.TCPFlow[Any]) -> None:
        assert tls is not None
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                r = await mtls.server(flow, tls)
        except TimeoutError:
            r = None
        if not isinstance(r, Ok):
            why = "TLS handshake: timed out" if r is None else r.error.msg
            await console.log_s(f"{flow.get_dest()[0]} {why}")
            await flow.close()
            return
        await Session(r.value, kv, console, lines).serve()

    stack.listen_tcpv4(port=HTTP_PORT, callback=on_connection)
    ips = [str(ip) for ip in stack.ipv4().get_ip()]
    where = ", ".join(f"http://{ip}:{HTTP_PORT}/" for ip in ips)
    if tls is not None:
        stack.listen_tcpv4(port=HTTPS_PORT, callback=on_tls_connection)
        where += ", " + ", ".join(f"https://{ip}:{HTTPS_PORT}/" for ip in ips)
    await console.log_s(f"static_website: serving the store on {where}")
    await stack.listen()
