"""examples/dns_server on our stack over TAP, asked by the kernel's dig; and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.apprun import ROOT, app_namespace, loopback_ip, running

ZONES = ROOT / "examples" / "dns_server" / "zones"


@pytest.mark.kernel
def test_dig_gets_answers_from_the_example_over_tap() -> None:
    with app_namespace("dns", "10.81.0.1") as ns:
        args = ("--net", f"tap:{ns.tap}", "--ip", "10.81.0.2/24", "--kv", str(ZONES))
        with running("examples/dns_server", *args, netns=ns.name,
                     ready=r"dns_server: answering on 10\.81\.0\.2 port 53") as r:  # fmt: skip
            r.wait_for(r"zone example\.test\. from example\.test\.zone")
            dig = ("dig", "@10.81.0.2", "+time=2", "+tries=3")
            assert ns.run(*dig, "+short", "www.example.test").split() == [b"10.0.0.80"]
            assert ns.run(*dig, "+short", "+tcp", "txt.example.test", "TXT").strip() == (
                b'"served by miragekit"'
            )
            assert b"status: NXDOMAIN" in ns.run(*dig, "nope.example.test")


def run_app(kv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "miragekit", "run", "examples/dns_server", "--net", "vnet",
         "--kv", str(kv)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_broken_zone_or_none_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "bad.test.zone").write_text(
        "@ IN SOA ns1 hostmaster 1 2 3 4 5\nwww IN A 300.1.1.1\n"
    )
    p = run_app(tmp_path)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("dns_server: bad.test.zone:") and "malformed" in last, p.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_app(empty)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == "dns_server: the store holds no NAME.zone file"


LOOKUP = str(Path(__file__).parent / "lookup_app")


def test_describe_names_the_resolver_each_backend_gets() -> None:
    def describe(*args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "miragekit", "describe", LOOKUP, *args],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        return p.stdout

    assert "NameResolver: miragekit.dns.Resolver (servers: 10.0.0.1)" in describe(
        "--net", "vnet", "--dns", "10.0.0.1"
    )
    assert "NameResolver: miragekit.dns.HostResolver (the host resolver)" in describe()
    p = subprocess.run([sys.executable, "-m", "miragekit", "run", LOOKUP, "--dns", "dns.example"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert p.returncode == 2
    assert p.stderr == "miragekit: --dns dns.example: not an IP address (e.g. --dns 10.0.0.1)\n"


@pytest.mark.kernel  # port 53 on the host's loopback
def test_an_app_on_host_sockets_asks_the_dns_server_given() -> None:
    ip = loopback_ip()
    with running("examples/dns_server", "--net", "socket", "--ip", ip, "--kv", str(ZONES),
                 ready="dns_server: answering"):  # fmt: skip
        p = subprocess.run([sys.executable, "-m", "miragekit", "run", LOOKUP, "--dns", ip],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert p.stdout.splitlines() == [
        "www.example.test: ['fd00::80', '10.0.0.80']",
        "nope.example.test: nope.example.test: no such name (NXDOMAIN)",
    ]


@pytest.mark.kernel
def test_an_app_on_our_stack_asks_the_dns_server_given_over_tap() -> None:
    """Both ends on our stack: the server app over one TAP, the lookup app over a second
    TAP in the same namespace, the kernel bridging the two."""
    with app_namespace("dnl", "10.82.0.1") as ns:
        tap2 = ns.tap + "b"
        ns.run("ip", "tuntap", "add", "mode", "tap", "name", tap2)
        ns.run("ip", "link", "add", "br0", "type", "bridge")
        for dev in (ns.tap, tap2):
            ns.run("ip", "link", "set", dev, "master", "br0")
        ns.run("ip", "link", "set", tap2, "up")
        ns.run("ip", "link", "set", "br0", "up")
        server = ("--net", f"tap:{ns.tap}", "--ip", "10.82.0.2/24", "--kv", str(ZONES))
        with running("examples/dns_server", *server, netns=ns.name, ready="dns_server: answering"):
            out = ns.run(sys.executable, "-m", "miragekit", "run", LOOKUP, "--net", f"tap:{tap2}",
                         "--ip", "10.82.0.3/24", "--dns", "10.82.0.2")  # fmt: skip
    assert out.decode().splitlines()[-2:] == [
        "www.example.test: ['10.0.0.80']",  # an IPv4-only stack asks for A only
        "nope.example.test: nope.example.test: no such name (NXDOMAIN)",
    ]
