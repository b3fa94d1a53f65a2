"""Names in unmodified asyncio code on miragekit's loop resolve through DNS over the stack."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.apprun import ROOT, app_namespace

from miragekit import aio, v1
from miragekit.dns import Authority, Resolver, Server
from miragekit.link import VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static

ZONE = """$TTL 60
@    IN SOA ns hostmaster 1 3600 600 86400 30
@    IN NS  ns
ns   IN A   10.0.0.2
db   IN A   10.0.0.2
web  IN CNAME db
"""


async def two_stacks() -> tuple[DirectStackV4, DirectStackV4]:
    sw = VnetSwitch(seed=1)
    out = []
    for i in (1, 2):
        netif = sw.add_interface(f"s{i}")
        cfg = v1.StackConfig(f"s{i}", None, netif, Static(f"10.0.0.{i}/24"))
        r = await DirectStackV4.connect(cfg)
        assert isinstance(r, Ok)
        out.append(r.value)
    return out[0], out[1]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(100))
    await writer.drain()
    writer.close()


def test_open_connection_and_getaddrinfo_resolve_names_over_the_stack() -> None:
    async def main() -> None:
        client, server = await two_stacks()
        Server(server, Authority.from_text(ZONE, "lab.test.")).serve(53)
        with aio.bind(server):
            srv = await asyncio.start_server(echo, "10.0.0.2", 5432)
        resolver = Resolver(client, ["10.0.0.2"], rng=random.Random(1))
        try:
            with aio.bind(client, resolver=resolver):
                loop = asyncio.get_running_loop()
                infos = await loop.getaddrinfo("web.lab.test", 5432, type=socket.SOCK_STREAM)
                assert [i[4] for i in infos] == [("10.0.0.2", 5432)]
                r, w = await asyncio.open_connection("db.lab.test", 5432)
                w.write(b"hello")
                assert await r.read() == b"hello"
                w.close()
                with pytest.raises(socket.gaierror) as e:
                    await asyncio.open_connection("nope.lab.test", 5432)
                assert e.value.errno == socket.EAI_NONAME and "NXDOMAIN" in str(e.value)
            # Bound without a resolver and with no server known: a clear gaierror.
            with aio.bind(client):
                with pytest.raises(socket.gaierror) as e:
                    await asyncio.open_connection("db.lab.test", 5432)
                assert "no DNS server known to the stack" in str(e.value)
        finally:
            srv.close()
            await client.disconnect()
            await server.disconnect()

    aio.run(main())


PROGRAM = """
import asyncio, sys

async def main():
    r, w = await asyncio.open_connection(sys.argv[1], 7000)
    w.write(b"ping\\n")
    print((await r.readline()).decode().strip(), flush=True)
    w.close()

asyncio.run(main())
"""


@pytest.mark.kernel
def test_exec_with_dns_reaches_a_kernel_server_by_name(tmp_path: Path) -> None:
    """``miragekit exec --dns`` over TAP: dnsmasq in the namespace names the kernel side,
    socat answers there; the unmodified program connects by name."""
    prog = tmp_path / "by_name.py"
    prog.write_text(PROGRAM)
    with app_namespace("xdn", "10.83.0.1") as ns:
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, "/usr/sbin/dnsmasq", "--no-daemon",
             "--conf-file=/dev/null", "--user=root", "--no-resolv", "--no-hosts",
             "--listen-address=10.83.0.1", "--bind-interfaces", "--local=/test/",
             "--address=/kernel.lab.test/10.83.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        echo_srv = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, "socat", "TCP-LISTEN:7000,reuseaddr,fork",
             "SYSTEM:'read l; echo pong-$l'"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            p = subprocess.run(
                ["ip", "netns", "exec", ns.name, sys.executable, "-m", "miragekit", "exec",
                 "--net", f"tap:{ns.tap}", "--ip", "10.83.0.2/24", "--dns", "10.83.0.1",
                 "--", str(prog), "kernel.lab.test"],
                cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )  # fmt: skip
        finally:
            for proc in (dnsmasq, echo_srv):
                proc.terminate()
                proc.wait()
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "pong-ping"
