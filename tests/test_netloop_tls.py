"""TLS with the standard ``ssl`` module over the stack loop, compared with host sockets:
``ssl=`` on both ends, ``start_tls``, SNI and ``server_hostname``, and the verification
errors asyncio raises."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import trustme
from tests.test_netloop import Env, both, echo

CA = trustme.CA()
CERT = CA.issue_cert("server.test")


def server_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CERT.configure_cert(ctx)
    return ctx


def client_context(ca: trustme.CA = CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def test_tls_round_trip_with_sni() -> None:
    async def snippet(env: Env) -> Any:
        names: list[str | None] = []
        sctx = server_context()
        sctx.sni_callback = lambda sslobj, name, ctx: names.append(name)
        with env.server():
            server = await asyncio.start_server(echo, env.host, 0, ssl=sctx)
        port = server.sockets[0].getsockname()[1]
        with env.client():
            reader, writer = await asyncio.open_connection(
                env.host, port, ssl=client_context(), server_hostname="server.test"
            )
        payload = bytes(range(256)) * 2000
        writer.write(payload)
        await writer.drain()
        got = await reader.readexactly(len(payload))
        obj = writer.get_extra_info("ssl_object")
        peer = writer.get_extra_info("peername")
        writer.close()
        await writer.wait_closed()
        server.close()
        return (
            got == payload,
            obj.server_hostname,
            obj.getpeercert()["subjectAltName"],
            names,
            peer == (env.host, port),
        )

    assert both(snippet) == (
        True,
        "server.test",
        (("DNS", "server.test"),),
        ["server.test"],
        True,
    )


def test_wrong_ca_or_name_fails_verification() -> None:
    async def snippet(env: Env) -> Any:
        with env.server():
            server = await asyncio.start_server(echo, env.host, 0, ssl=server_context())
        port = server.sockets[0].getsockname()[1]
        out: list[tuple[str, ...]] = []
        for ctx, name in (
            (client_context(trustme.CA()), "server.test"),
            (client_context(), "other.test"),
        ):
            with env.client():
                try:
                    await asyncio.open_connection(env.host, port, ssl=ctx, server_hostname=name)
                    out.append(("connected",))
                except ssl.SSLCertVerificationError as e:
                    out.append((type(e).__name__, e.verify_message))
        server.close()
        return out

    assert both(snippet) == [
        ("SSLCertVerificationError", "unable to get local issuer certificate"),
        (
            "SSLCertVerificationError",
            "Hostname mismatch, certificate is not valid for 'other.test'.",
        ),
    ]


def test_start_tls_upgrades_a_plain_connection() -> None:
    async def snippet(env: Env) -> Any:
        async def starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.drain()
            await writer.start_tls(server_context())
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()

        with env.server():
            server = await asyncio.start_server(starttls, env.host, 0)
        port = server.sockets[0].getsockname()[1]
        with env.client():
            reader, writer = await asyncio.open_connection(env.host, port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_context(), server_hostname="server.test")
        writer.write(b"secret\n")
        got = await reader.readline()
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        server.close()
        return got, version

    assert both(snippet) == (b"SECRET\n", "TLSv1.3")
