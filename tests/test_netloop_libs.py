"""Real asyncio libraries, unmodified, on miragekit stacks: aiohttp, httpx, websockets,
and plain streams and UDP, with the Linux kernel (over TAP) or another stack as peer."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import trustme
import websockets.asyncio.client
import websockets.asyncio.server
from aiohttp import web
from tests.kernelnet import KERNEL_IP, OUR_IP, KernelNet
from tests.test_direct_kernel import with_direct
from tests.test_netloop import make_stacks

from miragekit import aio
from miragekit.netloop import HOSTS
from miragekit.stack import DirectStackV4

CHUNKS = [b"alpha-" * 1000, b"beta-" * 3000, b"gamma"]


def app() -> web.Application:
    """An ordinary aiohttp application: a page, a chunked stream, an upload digest."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.remote}\n")

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for c in CHUNKS:
            await resp.write(c)
        await resp.write_eof()
        return resp

    async def upload(request: web.Request) -> web.Response:
        h = hashlib.sha256()
        n = 0
        async for chunk in request.content.iter_any():
            h.update(chunk)
            n += len(chunk)
        return web.Response(text=f"{n} {h.hexdigest()}")

    a = web.Application()
    a.add_routes([web.get("/", index), web.get("/chunked", chunked), web.post("/upload", upload)])
    return a


async def serve(port: int) -> web.AppRunner:
    runner = web.AppRunner(app())
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


def on_tap(knet: KernelNet, body: Callable[[DirectStackV4], Awaitable[None]]) -> None:
    """``body(stack)`` on a stack over TAP (kernel side 10.77.0.1), bound to it."""

    async def bound(stack: DirectStackV4) -> None:
        with aio.bind(stack):
            async with asyncio.timeout(90):
                await body(stack)

    aio.run(with_direct(knet, bound))


def on_switch(body: Callable[[DirectStackV4, DirectStackV4], Awaitable[None]]) -> None:
    """``body(client, server)``: two stacks on a virtual switch (10.0.0.1, 10.0.0.2)."""

    async def main() -> None:
        _, (c, s) = await make_stacks()
        try:
            async with asyncio.timeout(90):
                await body(c, s)
        finally:
            await c.disconnect()
            await s.disconnect()

    aio.run(main())


# -- aiohttp ------------------------------------------------------------------------------


@pytest.mark.kernel
def test_aiohttp_application_answers_the_kernels_curl(knet: KernelNet) -> None:
    async def body(stack: DirectStackV4) -> None:
        runner = await serve(8080)
        base = f"http://{OUR_IP}:8080"
        # Two URLs in one curl: the second reuses the connection (keep-alive).
        rc, out = await knet.exec(
            "curl", "-sS", "-w", "|%{num_connects}\n", f"{base}/", f"{base}/chunked", timeout=30
        )
        assert rc == 0, out
        first, second = out.split(b"|1\n", 1)
        assert first == f"hello {KERNEL_IP}\n".encode()
        assert second == b"".join(CHUNKS) + b"|0\n"
        await runner.cleanup()

    on_tap(knet, body)


KERNEL_SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        port = str(self.client_address[1]).encode()
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one-" * 500, b"two-" * 900, port):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(port)))
            self.end_headers()
            self.wfile.write(port)
srv = http.server.HTTPServer((sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8000), H)
if len(sys.argv) > 3:
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"""


@pytest.mark.kernel
def test_aiohttp_client_fetches_from_a_kernel_http_server(knet: KernelNet) -> None:
    async def body(stack: DirectStackV4) -> None:
        server = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", knet.ns, sys.executable, "-c", KERNEL_SERVER, KERNEL_IP
        )  # fmt: skip
        try:
            base = f"http://{KERNEL_IP}:8000"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
                for _ in range(100):
                    try:
                        async with session.get(f"{base}/") as resp:
                            port1 = await resp.text()
                        break
                    except aiohttp.ClientConnectorError:
                        await asyncio.sleep(0.1)  # not listening yet
                async with session.get(f"{base}/") as resp:
                    assert await resp.text() == port1  # the same connection: keep-alive
                async with session.get(f"{base}/chunked") as resp:
                    assert resp.headers["Transfer-Encoding"] == "chunked"
                    text = await resp.text()
                assert text == "one-" * 500 + "two-" * 900 + port1
        finally:
            HOSTS.pop("server.test", None)
            server.kill()
            await server.wait()

    on_tap(knet, body)


# -- httpx and websockets between two stacks ---------------------------------------------


def test_httpx_get_and_streaming_post() -> None:
    async def body(client: DirectStackV4, server: DirectStackV4) -> None:
        with aio.bind(server):
            runner = await serve(8080)
        payload = bytes(range(256)) * 4096

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(payload), 65536):
                yield payload[i : i + 65536]
                await asyncio.sleep(0)

        with aio.bind(client):
            async with httpx.AsyncClient(base_url="http://10.0.0.2:8080") as http:
                r = await http.get("/")
                assert r.status_code == 200 and r.text == "hello 10.0.0.1\n"
                r = await http.post("/upload", content=chunks())
                assert r.request.headers["Transfer-Encoding"] == "chunked"
                assert r.text == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
                async with http.stream("GET", "/chunked") as resp:
                    got = b"".join([c async for c in resp.aiter_raw()])
                assert got == b"".join(CHUNKS)
        await runner.cleanup()

    on_switch(body)


N_MESSAGES = 1000


def test_websockets_client_and_server_on_two_stacks() -> None:
    async def body(client: DirectStackV4, server: DirectStackV4) -> None:
        async def echo(ws: websockets.asyncio.server.ServerConnection) -> None:
            async for msg in ws:
                await ws.send(msg)

        with aio.bind(server):
            srv = await websockets.asyncio.server.serve(echo, "0.0.0.0", 8765)
        with aio.bind(client):
            async with websockets.asyncio.client.connect("ws://10.0.0.2:8765") as ws:

                async def sender() -> None:
                    for i in range(N_MESSAGES):
                        await ws.send(f"message {i}")

                task = asyncio.create_task(sender())
                got = [await ws.recv() for _ in range(N_MESSAGES)]
                await task
        assert got == [f"message {i}" for i in range(N_MESSAGES)]
        srv.close()
        await srv.wait_closed()

    on_switch(body)


WS_CLIENT = r"""
import asyncio, sys
from websockets.asyncio.client import connect
async def main():
    async with connect(sys.argv[1]) as ws:
        for i in range(int(sys.argv[2])):
            await ws.send(f"m{i}")
        n = 0
        for i in range(int(sys.argv[2])):
            assert await ws.recv() == f"M{i}"
            n += 1
        print("ok", n)
asyncio.run(main())
"""


@pytest.mark.kernel
def test_websockets_server_on_our_stack_reached_by_a_kernel_client(knet: KernelNet) -> None:
    async def body(stack: DirectStackV4) -> None:
        async def upper(ws: websockets.asyncio.server.ServerConnection) -> None:
            async for msg in ws:
                assert isinstance(msg, str)
                await ws.send(msg.upper())

        srv = await websockets.asyncio.server.serve(upper, "0.0.0.0", 8765)
        rc, out = await knet.exec(
            sys.executable, "-c", WS_CLIENT, f"ws://{OUR_IP}:8765", str(N_MESSAGES), timeout=60
        )
        assert rc == 0 and out.strip() == f"ok {N_MESSAGES}".encode(), out
        srv.close()
        await srv.wait_closed()

    on_tap(knet, body)


# -- plain streams and UDP against kernel peers (socat) ------------------------------------


@pytest.mark.kernel
def test_streams_and_udp_echo_against_kernel_peers(knet: KernelNet, tmp_path: Path) -> None:
    async def body(stack: DirectStackV4) -> None:
        loop = asyncio.get_running_loop()

        # Our server, the kernel's client.
        async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.read()).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(upper, None, 7000)
        rc, out = await knet.exec("socat", "-t5", "-", f"TCP:{OUR_IP}:7000", stdin=b"abc" * 10000)
        assert rc == 0 and out == b"ABC" * 10000, out[:100]
        server.close()

        # The kernel's echo servers (TCP and UDP), our clients.
        peers = [
            await asyncio.create_subprocess_exec(
                "ip",
                "netns",
                "exec",
                knet.ns,
                "socat",
                f"{kind}-LISTEN:9000,reuseaddr,fork",
                "PIPE",
            )
            for kind in ("TCP", "UDP")
        ]
        try:
            for _ in range(100):
                try:
                    reader, writer = await asyncio.open_connection(KERNEL_IP, 9000)
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.05)
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            writer.close()

            got: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

            class Client(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: Any) -> None:
                    got.put_nowait((data, addr))

            transport, _ = await loop.create_datagram_endpoint(
                Client, remote_addr=(KERNEL_IP, 9000)
            )
            # socat's UDP side may still be starting (the TCP one answered first): a
            # datagram sent before it listens is refused, so the first one is repeated.
            for _ in range(50):
                transport.sendto(b"hello")
                try:
                    data, addr = await asyncio.wait_for(got.get(), 0.2)
                    break
                except TimeoutError:
                    pass
            assert data == b"hello" and addr == (KERNEL_IP, 9000)
            await asyncio.sleep(0.3)
            while not got.empty():
                assert got.get_nowait()[0] == b"hello"  # late echoes of the repeats
            for i in range(5):
                transport.sendto(f"datagram {i}".encode())
                data, addr = await asyncio.wait_for(got.get(), 5)
                assert data == f"datagram {i}".encode() and addr == (KERNEL_IP, 9000)
            transport.close()
        finally:
            for p in peers:
                p.kill()
                await p.wait()

        # Our UDP echo, the kernel's client.
        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, t: asyncio.BaseTransport) -> None:
                self.t: Any = t

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.t.sendto(data[::-1], addr)

        echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", 7001))
        rc, out = await knet.exec("socat", "-t2", "-", f"UDP:{OUR_IP}:7001", stdin=b"stressed")
        assert rc == 0 and out == b"desserts", out
        echo.close()

    on_tap(knet, body)


@pytest.mark.kernel
def test_aiohttp_over_tls_both_ways_with_a_test_ca(knet: KernelNet, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("server.test")
    ca_pem, cert_pem, key_pem = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))

    async def body(stack: DirectStackV4) -> None:
        # Our HTTPS server, the kernel's curl (verifying against the test CA).
        sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(sctx)
        runner = web.AppRunner(app())
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", 8443, ssl_context=sctx).start()
        url = "https://server.test:8443/chunked"
        rc, out = await knet.exec(
            "curl", "-sS", "--cacert", str(ca_pem), "--resolve", f"server.test:8443:{OUR_IP}", url
        )  # fmt: skip
        assert rc == 0 and out == b"".join(CHUNKS), out[:200]
        await runner.cleanup()

        # The kernel's HTTPS server, our aiohttp client.
        server = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", knet.ns, sys.executable, "-c", KERNEL_SERVER, KERNEL_IP,
            "8443", str(cert_pem), str(key_pem),
        )  # fmt: skip
        try:
            cctx = ssl.create_default_context()
            ca.configure_trust(cctx)
            # aiohttp's own resolver asks the loop, which answers from the static table.
            HOSTS["server.test"] = [KERNEL_IP]
            conn = aiohttp.TCPConnector(ssl=cctx)
            async with aiohttp.ClientSession(connector=conn) as session:
                for _ in range(100):
                    try:
                        async with session.get("https://server.test:8443/chunked") as resp:
                            text = await resp.text()
                        break
                    except aiohttp.ClientConnectorError:
                        await asyncio.sleep(0.1)
                assert (
                    text.startswith("one-one-") and resp.headers["Transfer-Encoding"] == "chunked"
                )
            # The wrong CA fails as on the host: the verification error inside aiohttp's.
            bad = ssl.create_default_context()
            trustme.CA().configure_trust(bad)
            conn = aiohttp.TCPConnector(ssl=bad)
            async with aiohttp.ClientSession(connector=conn) as session:
                with pytest.raises(aiohttp.ClientConnectorCertificateError) as e:
                    await session.get("https://server.test:8443/")
                assert isinstance(e.value.certificate_error, ssl.SSLCertVerificationError)
        finally:
            HOSTS.pop("server.test", None)
            server.kill()
            await server.wait()

    on_tap(knet, body)
