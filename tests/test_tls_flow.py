"""TLS over a V1 TCP FLOW (``miragekit.tls``): the FLOW conformance suite through it, SNI,
verification failures, a client on our stack against a kernel TLS server, and
``examples/static_website --tls CERT,KEY`` serving HTTPS beside HTTP to the kernel's curl."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import textwrap
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import trustme
from tests.apprun import SITE, AppNs, app_namespace, running
from tests.kernelnet import KERNEL_IP, KernelNet, run
from tests.test_direct_kernel import with_direct
from tests.test_netloop_tls import CA, CERT
from tests.test_netloop_tls import client_context as client_ctx
from tests.test_netloop_tls import server_context as server_ctx
from tests.test_runner_dhcp_vxlan import miragekit

from miragekit import tls
from miragekit.result import EOF, Error, Ok
from miragekit.stack import DirectStackV4
from miragekit.testing import FLOW_CHECKS, check_flow, flow_pair


async def tls_pair(
    cctx: ssl.SSLContext | None = None,
    sctx: ssl.SSLContext | None = None,
    name: str = "server.test",
) -> tuple[Any, Any]:
    """Both sides' handshake results over an in-memory flow pair."""
    a, b = flow_pair(capacity=64 * 1024)
    c, s = await asyncio.gather(
        tls.client(a, cctx or client_ctx(), name), tls.server(b, sctx or server_ctx())
    )
    return c, s


async def connected() -> tuple[Any, Any]:
    c, s = await tls_pair()
    assert isinstance(c, Ok) and isinstance(s, Ok), (c, s)
    return c.value, s.value


@pytest.mark.parametrize("name", FLOW_CHECKS)
def test_flow_conformance_through_tls(name: str) -> None:
    asyncio.run(check_flow(connected, only=[name]))


def test_sni_server_hostname_and_close_notify() -> None:
    async def main() -> Any:
        names: list[str | None] = []
        sctx = server_ctx()
        sctx.sni_callback = lambda obj, name, ctx: names.append(name)
        c, s = await tls_pair(sctx=sctx)
        assert isinstance(c, Ok) and isinstance(s, Ok)
        client, server = c.value, s.value
        assert isinstance(await client.writev([b"GET ", b"/ ", b"HTTP/1.1\r\n"]), Ok)
        r = await server.read()
        assert isinstance(r, Ok) and bytes(r.value) == b"GET / HTTP/1.1\r\n"
        await server.close()  # close_notify: the client reads the end of the flow
        return (
            names,
            client.ssl_object.server_hostname,
            client.ssl_object.getpeercert()["subjectAltName"][0],
            client.ssl_object.version(),
            await client.read(),
            client.get_dest() == client.flow.get_dest(),
        )

    assert asyncio.run(main()) == (
        ["server.test"],
        "server.test",
        ("DNS", "server.test"),
        "TLSv1.3",
        EOF,
        True,
    )


def test_wrong_ca_or_name_fails_with_the_ssl_reason() -> None:
    async def main() -> list[str]:
        out = []
        for cctx, name in ((client_ctx(trustme.CA()), "server.test"), (client_ctx(), "x.test")):
            c, s = await tls_pair(cctx, name=name)
            assert isinstance(c, Error) and isinstance(s, Error), (c, s)
            out += [c.error.msg, s.error.msg]
        return out

    got = asyncio.run(main())
    assert got[0] == (
        "TLS handshake: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "unable to get local issuer certificate"
    )
    assert got[1].startswith("TLS handshake: [SSL: TLSV1_ALERT_UNKNOWN_CA]"), got[1]
    assert got[2].endswith("Hostname mismatch, certificate is not valid for 'x.test'."), got[2]
    assert got[3].startswith("TLS handshake: [SSL: SSLV3_ALERT_BAD_CERTIFICATE]"), got[3]


def test_handshake_cut_short_is_an_error_not_a_hang() -> None:
    async def main() -> Any:
        a, b = flow_pair()
        server = asyncio.ensure_future(tls.server(b, server_ctx()))
        await a.write(b"\x16\x03\x01\x00\x05hello")  # a record header, then the end
        await a.close()
        return await asyncio.wait_for(server, 5)

    r = asyncio.run(main())
    assert isinstance(r, Error) and r.error.msg.startswith("TLS handshake: "), r


def pem_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    cert, key, other = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "other.pem"
    CERT.cert_chain_pems[0].write_to_path(str(cert))
    CERT.private_key_pem.write_to_path(str(key))
    CA.issue_cert("other.test").private_key_pem.write_to_path(str(other))
    return cert, key, other


def test_server_context_says_what_is_wrong(tmp_path: Path) -> None:
    cert, key, other = pem_files(tmp_path)
    assert isinstance(tls.server_context(cert, key), ssl.SSLContext)
    for c, k, why in (
        (tmp_path / "nope.pem", key, f"{tmp_path / 'nope.pem'}: no such file"),
        (cert, tmp_path, f"{tmp_path}: is not a file"),
        (cert, other, f"{cert},{other}: the key does not match the certificate"),
        (key, cert, f"{key},{cert}: not a PEM certificate and its private key"),
    ):
        with pytest.raises(ValueError) as e:
            tls.server_context(c, k)
        assert str(e.value) == why


def test_runner_tls_option_misuse_is_one_line(tmp_path: Path) -> None:
    cert, key, other = pem_files(tmp_path)
    site = ("examples/static_website", "--kv", str(SITE))
    for arg, line in (
        (f"{cert}", f"miragekit: --tls {cert}: use CERT,KEY (two PEM files: certificate, key)"),
        (f"{cert},{tmp_path}/k", f"miragekit: --tls: {tmp_path}/k: no such file"),
        (
            f"{cert},{other}",
            f"miragekit: --tls: {cert},{other}: the key does not match the certificate",
        ),
    ):
        p = miragekit("run", *site, "--tls", arg)
        assert (p.returncode, p.stderr) == (2, line + "\n")
    p = miragekit("describe", *site, "--tls", f"{cert},{key}")
    assert p.returncode == 0 and f"tls tls = server context from {cert}, {key}" in p.stdout
    p = miragekit("describe", "examples/hello", "--tls", f"{cert},{key}")
    assert p.stderr == (
        "miragekit: warning: --tls: examples/hello takes no ssl.SSLContext; --tls is ignored\n"
    )


# --- against the kernel -----------------------------------------------------------------

KERNEL_SERVER = textwrap.dedent(
    """
    import socket, ssl, sys
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    names = []
    ctx.sni_callback = lambda obj, name, c: names.append(name)
    ls = socket.create_server(("10.77.0.1", 4433))
    print("listening", flush=True)
    for _ in range(2):
        conn, _ = ls.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as s:
                data = b""
                while len(data) < 300000:
                    data += s.recv(65536)
                s.sendall(data[::-1])
                s.unwrap()
        except (ssl.SSLError, OSError) as e:
            print("failed", type(e).__name__, flush=True)
    print("sni", names, flush=True)
    """
)


@pytest.mark.kernel
def test_client_on_our_stack_against_a_kernel_tls_server(knet: KernelNet, tmp_path: Path) -> None:
    cert, key, _ = pem_files(tmp_path)
    script = tmp_path / "server.py"
    script.write_text(KERNEL_SERVER)

    async def body(stack: DirectStackV4) -> None:
        server = asyncio.ensure_future(
            knet.exec(sys.executable, str(script), str(cert), str(key), timeout=30)
        )
        payload = bytes(range(256)) * 1200
        results: list[Any] = []
        for ctx, name in ((client_ctx(), "server.test"), (client_ctx(), "wrong.test")):
            flow = None
            for _ in range(100):  # until the server listens
                r = await stack.tcpv4().create_connection((IPv4Address(KERNEL_IP), 4433))
                if isinstance(r, Ok):
                    flow = r.value
                    break
                await asyncio.sleep(0.1)
            assert flow is not None
            t = await tls.client(flow, ctx, name)
            if isinstance(t, Error):
                results.append(t.error.msg)
                await flow.close()
                continue
            client = t.value
            assert isinstance(await client.write(payload), Ok)
            got = bytearray()
            while isinstance(rd := await client.read(), Ok):
                got += rd.value
            results.append((bytes(got) == payload[::-1], rd, client.ssl_object.version()))
            await client.close()
        rc, out = await server
        assert rc == 0, out
        lines = out.decode().splitlines()
        assert lines[0] == "listening"
        assert lines[-1] == "sni ['server.test', 'wrong.test']", lines
        assert results[0] == (True, EOF, "TLSv1.3")
        assert results[1].endswith("Hostname mismatch, certificate is not valid for 'wrong.test'.")

    run(with_direct(knet, body), timeout=60)


@pytest.fixture
def ns() -> Any:
    with app_namespace("tls", "10.78.0.1") as n:
        yield n


@pytest.mark.kernel
def test_static_website_serves_https_beside_http(ns: AppNs, tmp_path: Path) -> None:
    cert, key, _ = pem_files(tmp_path)
    ca, other_ca = tmp_path / "ca.pem", tmp_path / "other-ca.pem"
    CA.cert_pem.write_to_path(str(ca))
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    args = ["--net", f"tap:{ns.tap}", "--ip", "10.78.0.2/24", "--kv", str(SITE)]
    args += ["--tls", f"{cert},{key}"]
    ready = "serving the store on http://10.78.0.2:80/, https://10.78.0.2:443/"
    size = (SITE / "index.html").stat().st_size
    fmt = r"%{http_code} %{num_connects} %{size_download} %{scheme}\n"
    with running("examples/static_website", *args, netns=ns.name, ready=ready) as r:
        curl = ("curl", "-sS", "--resolve", "server.test:443:10.78.0.2", "-w", fmt)
        out = ns.run(*curl, "--cacert", str(ca), "-o", "/dev/null", "https://server.test/",
                     "-o", "/dev/null", "https://server.test/style.css",
                     "-o", "/dev/null", "http://10.78.0.2/")  # fmt: skip
        css = (SITE / "style.css").stat().st_size
        assert out.decode().splitlines() == [
            f"200 1 {size} HTTPS",
            f"200 0 {css} HTTPS",  # keep-alive over TLS: the same connection
            f"200 1 {size} HTTP",
        ]
        bad = subprocess.run(["ip", "netns", "exec", ns.name, *curl, "--cacert", str(other_ca),
                              "https://server.test/"], capture_output=True, timeout=30)  # fmt: skip
        assert bad.returncode == 60 and b"SSL certificate problem" in bad.stderr, bad
        r.wait_for(r"^10\.78\.0\.1 TLS handshake: ")
        got = ns.run(*curl, "--cacert", str(ca), "-o", "/dev/null", "https://server.test/")
        assert got.decode() == f"200 1 {size} HTTPS\n"  # the server goes on serving
        assert r.count(r'^10\.78\.0\.1 "GET /" 200 ') == 3
