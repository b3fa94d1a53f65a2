"""examples/static_website through the runner, driven by curl and socat.

Each test runs on the host's sockets (``--net socket``, on a loopback address of its own)
and on miragekit's own stack behind the virtual switch (``--net vnet --forward 0:80``).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from examples.static_website import app as web
from tests.apprun import SITE, Running, loopback_ip, running, sh, sh_err

# The socket backend serves on the host's port 80, which needs root.
BACKENDS = [pytest.param("socket", marks=pytest.mark.kernel), "vnet"]
READY = r"static_website: serving the store on http://"


@dataclass
class Site:
    base: str  # e.g. http://127.0.0.1:8080
    run: Running


@contextlib.contextmanager
def serve(backend: str, kv: Path) -> Iterator[Site]:
    if backend == "socket":
        ip = loopback_ip()
        with running("examples/static_website", "--net", "socket", "--ip", ip, "--kv", str(kv),
                     ready=READY) as r:  # fmt: skip
            yield Site(f"http://{ip}", r)
    else:
        with running("examples/static_website", "--net", "vnet", "--forward", "0:80",
                     "--kv", str(kv), ready=READY) as r:  # fmt: skip
            (port,) = r.forwarded()
            yield Site(f"http://127.0.0.1:{port}", r)


@pytest.fixture(scope="module", params=BACKENDS)
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    with serve(request.param, SITE) as s:
        yield s


def curl(*args: str) -> bytes:
    return sh("curl", "-sS", "--max-time", "30", *args)


def test_key_and_content_type_mapping() -> None:
    assert web.key_for(b"/") == "index.html"
    assert web.key_for(b"/docs/") == "docs/index.html"
    assert web.key_for(b"/a%20b.txt?x=1#f") == "a b.txt"
    assert web.key_for(b"http://example/docs/notes.txt") == "docs/notes.txt"
    assert web.key_for(b"/../etc/passwd") is None
    assert web.key_for(b"/a/%2e%2e/b") is None
    assert web.key_for(b"*") is None
    assert web.content_type("style.css") == b"text/css; charset=utf-8"
    assert web.content_type("mirage.png") == b"image/png"
    assert web.content_type("x.unknownext") == b"application/octet-stream"


def test_pages_over_one_kept_alive_connection(site: Site) -> None:
    fmt = r"%{http_code} %{num_connects} %{content_type} %{size_download}\n"
    urls = [f"{site.base}/", f"{site.base}/style.css", f"{site.base}/mirage.png"]
    nulls = [a for u in urls for a in ("-o", "/dev/null", u)]  # -o applies to one URL
    out, err = sh_err("curl", "-sS", "-v", "-w", fmt, *nulls)
    assert "Re-using existing connection" in err
    assert out.decode().splitlines() == [
        "200 1 text/html; charset=utf-8 " + str((SITE / "index.html").stat().st_size),
        "200 0 text/css; charset=utf-8 " + str((SITE / "style.css").stat().st_size),
        "200 0 image/png " + str((SITE / "mirage.png").stat().st_size),
    ]
    assert curl(f"{site.base}/") == (SITE / "index.html").read_bytes()
    assert curl(f"{site.base}/mirage.png") == (SITE / "mirage.png").read_bytes()
    assert curl(f"{site.base}/docs/") == (SITE / "docs" / "index.html").read_bytes()
    assert curl(f"{site.base}/docs/notes.txt") == (SITE / "docs" / "notes.txt").read_bytes()
    site.run.wait_for(r'"GET /mirage\.png" 200 1024$')
    site.run.wait_for(r'"GET /docs/" 200 ')


def test_head_404_405_and_redirect(site: Site) -> None:
    head = curl("-I", f"{site.base}/style.css").decode().lower()
    assert head.startswith("http/1.1 200 ok\r\n")
    size = (SITE / "style.css").stat().st_size
    assert f"content-length: {size}\r\n" in head and "content-type: text/css" in head
    fmt = r"%{http_code} %{size_download} %{redirect_url}\n"
    out = curl("-o", "/dev/null", "-w", fmt, f"{site.base}/missing.html").decode()
    assert out == "404 10 \n"
    out = curl("-o", "/dev/null", "-w", fmt, "-X", "POST", "-d", "x=1", f"{site.base}/").decode()
    assert out == "405 19 \n"
    out = curl("-o", "/dev/null", "-w", fmt, f"{site.base}/docs").decode()
    assert out == f"301 0 {site.base}/docs/\n"
    assert curl("-L", f"{site.base}/docs") == (SITE / "docs" / "index.html").read_bytes()
    site.run.wait_for(r'"HEAD /style\.css" 200 ')
    site.run.wait_for(r'"GET /missing\.html" 404 10$')
    site.run.wait_for(r'"POST /" 405 ')


def test_bad_requests_get_400_and_close(site: Site) -> None:
    host, _, port = site.base.removeprefix("http://").partition(":")
    addr = f"TCP:{host}:{port or 80}"
    out = sh("socat", "-t", "5", "-", addr, input=b"NONSENSE\r\n\r\n").decode()
    assert out.startswith("HTTP/1.1 400 Bad Request\r\n") and "connection: close" in out
    # The reason is plain text, not a Python repr of the bytes.
    body = out.partition("\r\n\r\n")[2]
    assert body.startswith("400 bad request: ") and "NONSENSE" in body, body
    assert "bytearray" not in body and "b'" not in body, body
    # A valid request, then garbage on the same connection: one 200, then a 400.
    two = b"GET /docs/notes.txt HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n"
    out = sh("socat", "-t", "5", "-", addr, input=two).decode()
    assert out.startswith("HTTP/1.1 200 OK\r\n") and "HTTP/1.1 400 Bad Request\r\n" in out
    assert out.endswith("\n") and out.count("HTTP/1.1") == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_twenty_megabytes_byte_exact(backend: str, tmp_path: Path) -> None:
    kv = tmp_path / "kv"
    kv.mkdir()
    data = os.urandom(20 * 1000 * 1000)
    (kv / "big.bin").write_bytes(data)
    with serve(backend, kv) as s:
        fmt = r"%{http_code} %{size_download}"
        got = tmp_path / "got.bin"
        out = curl("-o", str(got), "-w", fmt, f"{s.base}/big.bin").decode()
        assert out == f"200 {len(data)}"
        assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(data).digest()
        head = curl("-I", f"{s.base}/big.bin").decode().lower()
        assert f"content-length: {len(data)}\r\n" in head
        assert "content-type: application/octet-stream" in head


def test_served_from_a_tar_archive(tmp_path: Path) -> None:
    import tarfile

    archive = tmp_path / "site.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(SITE, arcname=".")
    with serve("vnet", archive) as s:
        assert curl(f"{s.base}/") == (SITE / "index.html").read_bytes()
        assert curl(f"{s.base}/mirage.png") == (SITE / "mirage.png").read_bytes()
        assert curl(f"{s.base}/docs/") == (SITE / "docs" / "index.html").read_bytes()
        out = curl("-o", "/dev/null", "-w", "%{http_code}", f"{s.base}/docs/none").decode()
        assert out == "404"


@pytest.mark.kernel  # the host's port 80
def test_idle_keep_alive_connection_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process on the socket stack: a silent client is let go after IDLE_TIMEOUT."""
    import asyncio
    import time

    from miragekit.console import Console
    from miragekit.kv import DirKV
    from miragekit.result import Ok
    from miragekit.stack import SocketConfig, SocketStackV4

    monkeypatch.setattr(web, "IDLE_TIMEOUT", 0.5)
    ip = loopback_ip()

    async def main() -> None:
        out = os.open(os.devnull, os.O_WRONLY)
        c = await Console.connect("console", stdin_fd=None, stdout_fd=out, close_fds=True)
        s = await SocketStackV4.connect(SocketConfig(ips=(ipaddress.IPv4Address(ip),)))
        kv = await DirKV.connect(str(SITE))
        assert isinstance(c, Ok) and isinstance(s, Ok) and isinstance(kv, Ok)
        app = asyncio.ensure_future(web.start(c.value, s.value, kv.value))
        try:
            for _ in range(100):
                try:
                    r, w = await asyncio.open_connection(ip, 80)
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.02)
            else:
                pytest.fail(f"nothing listens on {ip}:80 after 2 s")
            w.write(b"GET /docs/notes.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await r.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            body = await r.readexactly((SITE / "docs" / "notes.txt").stat().st_size)
            assert body == (SITE / "docs" / "notes.txt").read_bytes()
            t0 = time.monotonic()
            assert await asyncio.wait_for(r.read(), 10) == b""  # closed by the server
            assert 0.3 < time.monotonic() - t0 < 5
            w.close()
        finally:
            app.cancel()
            await s.value.disconnect()
            await kv.value.disconnect()

    asyncio.run(main())


async def client_of_session(wrap: Any = None) -> Any:
    """In process on our stack (two stacks on the virtual switch; run it under
    ``sim.run``): a client flow to a :class:`web.Session` serving SITE on 10.0.0.2:80,
    the server's flow passed through ``wrap`` first if given."""
    from miragekit.console import Console
    from miragekit.kv import DirKV
    from miragekit.link import VnetSwitch
    from miragekit.net import TCP as TCPLayer
    from miragekit.net import IPv4Stack
    from miragekit.result import Ok

    out = os.open(os.devnull, os.O_WRONLY)
    c = await Console.connect("console", stdin_fd=None, stdout_fd=out, close_fds=True)
    kv = await DirKV.connect(str(SITE))
    assert isinstance(c, Ok) and isinstance(kv, Ok)
    sw = VnetSwitch()
    ips = [await IPv4Stack.connect(sw.add_interface(f"h{i}"), cidr=f"10.0.0.{i}/24")
           for i in (1, 2)]  # fmt: skip
    client, server = TCPLayer(ips[0].ipv4), TCPLayer(ips[1].ipv4)

    async def serve(flow: Any) -> None:
        await web.Session(flow if wrap is None else wrap(flow), kv.value, c.value).serve()

    server.listen(80, serve)
    r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 80))
    assert isinstance(r, Ok)
    return r.value


def test_small_response_is_one_write() -> None:
    """In process on our stack (two stacks on the virtual switch, simulated time): the
    head and the body of a small file reach the flow in one write. Two writes cost the
    socket backend two send calls and two segments each way of the loopback (the
    ``bench/http.py`` gap to the plain asyncio server)."""

    from miragekit import sim
    from miragekit.result import Ok

    page = (SITE / "index.html").read_bytes()
    writes: list[int] = []

    class Counted:
        """The server's real flow, its writes counted."""

        def __init__(self, flow: Any) -> None:
            self._flow = flow

        def __getattr__(self, name: str) -> Any:
            return getattr(self._flow, name)

        async def write(self, buf: Any) -> Any:
            writes.append(len(buf))
            return await self._flow.write(buf)

    async def main() -> None:
        flow = await client_of_session(Counted)
        for _ in range(2):  # keep-alive: each response one write
            assert await flow.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == Ok(None)
            got = b""
            while not got.endswith(page):
                rd = await flow.read()
                assert isinstance(rd, Ok), rd
                got += bytes(rd.value)
            assert got.startswith(b"HTTP/1.1 200 OK\r\n")
            assert writes[-1] == len(got)  # head and body: one write
        assert len(writes) == 2
        await flow.close()

    sim.run(main(), seed=1)


def test_request_lines_of_one_turn_go_in_one_console_write() -> None:
    """The console gets the request lines of one turn of the loop in one write, in
    order, every line ended; lines of a later turn in a later write."""
    import asyncio

    from miragekit.console import Console

    writes: list[str] = []

    class Counted(Console):
        async def log_s(self, s: str) -> None:
            writes.append(s)
            await super().log_s(s)

    async def main() -> bytes:
        r, w = os.pipe()
        os.set_blocking(r, False)
        c = Counted("console", stdin_fd=None, stdout_fd=w, close_fds=True)
        lines = web.LineLog(c)
        for i in range(3):
            lines.add(f"line {i}")
        assert lines.writer is not None
        await lines.writer
        lines.add("line 3")
        assert lines.writer is not None
        await lines.writer
        await c.close()
        out = os.read(r, 4096)
        os.close(r)
        return out

    out = asyncio.run(main())
    assert writes == ["line 0\r\nline 1\r\nline 2", "line 3"]
    assert out == b"line 0\r\nline 1\r\nline 2\r\nline 3\r\n"


def test_plain_gets_answered_without_h11_have_h11s_bytes() -> None:
    """The fast way for a plain keep-alive GET (the head h11 writes, cached, and the
    body; h11 started afresh with what followed the request) puts on the wire exactly
    what h11 itself answers, pipelined requests included; other requests (HTTP/1.0,
    ``Connection: close``, a body, an upgrade) take h11's way. In process on our stack, two
    stacks on the virtual switch in simulated time."""
    import h11

    from miragekit import sim
    from miragekit.result import Eof, Ok

    oracle = h11.Connection(h11.SERVER)

    def h11_answers(data: bytes) -> bytes:
        """What h11 writes answering ``data`` with each file, on one connection."""
        oracle.receive_data(data)
        out = b""
        while True:
            ev = oracle.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return out
            if isinstance(ev, h11.Request):
                key = web.key_for(ev.target)
                assert key is not None
                body = (SITE / key).read_bytes()
                head = web.ok_response(web.content_type(key), len(body))
                for part in (head, h11.Data(data=body), h11.EndOfMessage()):
                    out += oracle.send(part) or b""
            if oracle.our_state is h11.DONE and oracle.their_state is h11.DONE:
                oracle.start_next_cycle()

    fast: list[bool] = []
    finish = web.Session.finish_request

    def counted(self: web.Session) -> bool:
        fast.append(finish(self))
        return fast[-1]

    conversation = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\nGET /docs/notes.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /mirage.png HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        b"GET /docs/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ]

    async def main() -> list[tuple[bytes, bytes]]:
        flow = await client_of_session()
        pairs = []
        for sent in conversation:
            want = h11_answers(sent)
            assert await flow.write(sent) == Ok(None)
            got = b""
            while len(got) < len(want):
                rd = await flow.read()
                if isinstance(rd, Eof):
                    break
                assert isinstance(rd, Ok), rd
                got += bytes(rd.value)
            pairs.append((got, want))
        assert isinstance(await flow.read(), Eof)  # closed after Connection: close
        await flow.close()
        return pairs

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(web.Session, "finish_request", counted)
        pairs = sim.run(main(), seed=1)
    for got, want in pairs:
        assert got == want
    assert b"connection: close\r\n" in pairs[-1][1].lower()
    assert fast == [True, True, True, True]  # the close request never asked

    def req(method: bytes = b"GET", version: bytes = b"1.1", *extra: tuple[bytes, bytes]) -> Any:
        headers = [(b"host", b"x"), *extra]
        return h11.Request(method=method, target=b"/", headers=headers, http_version=version)

    assert web.plain_get(req()) and web.plain_get(
        req(b"GET", b"1.1", (b"connection", b"Keep-Alive"))
    )
    assert not web.plain_get(req(b"HEAD")) and not web.plain_get(req(b"GET", b"1.0"))
    for extra in ((b"connection", b"close"), (b"content-length", b"0"), (b"expect", b"100-continue"),
                  (b"transfer-encoding", b"chunked"), (b"upgrade", b"h2c")):  # fmt: skip
        assert not web.plain_get(req(b"GET", b"1.1", extra)), extra
