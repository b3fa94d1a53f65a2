"""examples/dhcp_server against real DHCP clients: busybox ``udhcpc`` and ISC ``dhclient``
on the kernel's side of a TAP device in a ``mk-`` namespace obtain, renew and release
leases; malformed and hostile messages (scapy) are dropped, counted and said.

The server runs as ``miragekit run`` with T1 = 2 s (``serve(renewal_time=2)``), so that
dhclient renews within the test; busybox ignores T1 and renews on SIGUSR1. The clients configure the device through small
scripts of our own (never the distribution's, which would touch the host's resolver).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.apprun import Running, running
from tests.apprun import sh as client_ok
from tests.netns import namespaces, sh

pytestmark = pytest.mark.kernel

SERVER_IP = "10.78.0.1"
APP = """
from miragekit import v1
from examples.dhcp_server.app import serve


async def start(console: v1.Console, stack: v1.StackV4, clock: v1.Clock) -> None:
    await serve(console, stack, clock, lease_time=60, renewal_time=2)
"""
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
esac
echo "$1 ${ip:-}" >> "$0.log"
"""
DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip addr flush dev "$interface"
    ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE) ip addr flush dev "$interface" ;;
esac
echo "$reason ${new_ip_address:-}" >> "$0.log"
"""


@dataclass
class Link:
    ns: str
    tap: str
    mac: str
    app: Running
    tmp: Path

    def script(self, name: str, text: str) -> Path:
        p = self.tmp / name
        p.write_text(text)
        p.chmod(0o755)
        return p

    def addresses(self) -> list[str]:
        out = subprocess.run(
            ["ip", "-n", self.ns, "-4", "-o", "addr", "show", "dev", self.tap],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return re.findall(r"inet (\S+)", out)

    @contextmanager
    def client(self, *args: str) -> Iterator[subprocess.Popen[bytes]]:
        """A DHCP client running in the namespace; killed on the way out if still there."""
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            yield p
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    def run_ok(self, *args: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.ns, *args], capture_output=True,
                       timeout=30, check=True)  # fmt: skip

    def fresh_neighbour(self) -> None:
        """Ping the server first: with the kernel's neighbour entry for it fresh, a
        client's unicast RELEASE leaves at once, before its script removes the address
        (a RELEASE still waiting for ARP then would be lost: UDP, sent once)."""
        self.run_ok("ping", "-c", "1", "-W", "2", SERVER_IP)

    def tables(self) -> list[str]:
        """Every lease table the server printed, in order."""
        return [ln.split("leases: ", 1)[1] for ln in list(self.app.lines) if "leases: " in ln]

    def wait_table(self, want: str, timeout: float = 15.0, after: int = 0) -> int:
        """Wait until a table printed after the first ``after`` matches ``want``; its index."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for i, t in enumerate(self.tables()[after:], after):
                if re.fullmatch(want, t):
                    return i
            time.sleep(0.1)
        raise AssertionError(f"no lease table matching {want!r}: {self.app.lines}")


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    with namespaces("dhcp") as (ns,):
        tap = "mk-dh0"
        sh("ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap)
        sh("ip", "-n", ns, "link", "set", tap, "up")
        mac = subprocess.run(
            ["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{tap}/address"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        app = tmp_path / "dhcp_app.py"
        app.write_text(APP)
        args = ("--net", f"tap:{tap}", "--ip", f"{SERVER_IP}/24")
        with running(str(app), *args, netns=ns, ready="dhcp_server: serving") as r:
            yield Link(ns, tap, mac, r, tmp_path)
        assert not [ln for ln in r.lines if "Traceback" in ln], r.lines


def wait_log(path: Path, word: str, timeout: float = 15.0) -> list[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = path.read_text().splitlines() if path.exists() else []
        if any(ln.split()[0] == word for ln in lines if ln.strip()):
            return lines
        time.sleep(0.1)
    raise AssertionError(f"the client's script never saw {word}: {path.read_text()}")


def test_udhcpc_obtains_renews_and_releases(link: Link) -> None:
    script = link.script("udhcpc.sh", UDHCPC_SCRIPT)
    log = Path(f"{script}.log")
    with link.client("udhcpc", "-f", "-R", "-i", link.tap, "-s", str(script),
                     "-t", "5", "-T", "1") as client:  # fmt: skip
        wait_log(log, "bound")
        (addr,) = link.addresses()
        assert addr == "10.78.0.100/24", addr
        first = link.wait_table(rf"10\.78\.0\.100 {link.mac} \d+s")
        client.send_signal(signal.SIGUSR1)  # renew now (busybox takes T1 as half the lease)
        wait_log(log, "renew")  # a unicast REQUEST, ACKed
        link.wait_table(rf"10\.78\.0\.100 {link.mac} \d+s", after=first + 1)
        assert link.addresses() == ["10.78.0.100/24"]
        link.fresh_neighbour()
        client.send_signal(signal.SIGTERM)  # -R: release on the way out
        assert client.wait(10) == 0
    link.wait_table("none")
    assert link.addresses() == []


def test_dhclient_obtains_renews_and_releases(link: Link) -> None:
    script = link.script("dhclient.sh", DHCLIENT_SCRIPT)
    log = Path(f"{script}.log")
    files = ("-sf", str(script), "-lf", str(link.tmp / "leases"), "-pf", str(link.tmp / "pid"))
    with link.client("dhclient", "-d", "-v", *files, link.tap) as client:
        wait_log(log, "BOUND")
        (addr,) = link.addresses()
        ip = addr.split("/")[0]
        assert ip.startswith("10.78.0.1") and len(ip) == len("10.78.0.100"), addr
        first = link.wait_table(rf"{re.escape(ip)} {link.mac} \d+s")
        wait_log(log, "RENEW", timeout=20)
        link.wait_table(rf"{re.escape(ip)} {link.mac} \d+s", after=first + 1)
        link.fresh_neighbour()
        # -r: release the lease and stop the daemon (found through the pid file).
        link.run_ok("dhclient", "-r", *files, link.tap)
        assert client.wait(10) is not None
    link.wait_table("none")
    assert link.addresses() == []


HOSTILE = r"""
import sys
from scapy.all import BOOTP, DHCP, IP, UDP, Ether, Raw, conf, sendp
conf.verb = 0
iface, mac = sys.argv[1], sys.argv[2]
hdr = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
chaddr = bytes.fromhex(mac.replace(":", ""))
ok = BOOTP(op=1, xid=7, chaddr=chaddr)
for payload in (
    Raw(b"\xff" * 40),                                               # too short for BOOTP
    ok / Raw(b"\x63\x82\x53\x63" + b"\x35\x09\x01"),                  # option past the end
    ok / Raw(b"\x63\x82\x53\x63" + b"\x35\x01\x63" + b"\xff"),        # unknown message type
    BOOTP(op=2, xid=8, chaddr=chaddr) / DHCP(options=[("message-type", "offer"), "end"]),
    BOOTP(op=1, xid=9, giaddr="10.9.9.9", chaddr=chaddr)
    / DHCP(options=[("message-type", "discover"), "end"]),          # relayed: unsupported
    ok / Raw(b"\x00\x00\x00\x00" + b"\x35\x01\x01\xff"),            # no magic cookie
):
    sendp(hdr / UDP(sport=68, dport=67) / payload, iface=iface)
sendp(hdr / UDP(sport=1234, dport=67) / ok / DHCP(options=[("message-type", "discover"), "end"]),
      iface=iface)
"""


def test_malformed_and_hostile_messages_are_dropped_and_counted(link: Link) -> None:
    sh("ip", "netns", "exec", link.ns, sys.executable, "-c", HOSTILE, link.tap, link.mac)
    last = link.app.wait_for(r"dhcp_server: dropped .* wrong port 1\)")
    said = [ln for ln in link.app.lines if "dhcp_server: dropped" in ln]
    assert len(said) == 7, said  # one line per message dropped
    # Short, option past the end, no cookie; a BOOTREPLY; a relay; an unknown type.
    assert "(malformed 3, not a request 1, relayed 1, ignored 1, wrong port 1)" in last.string
    assert link.tables() == [] or link.tables()[-1] == "none"  # nothing was leased
    # The server still serves a real client afterwards.
    script = link.script("udhcpc.sh", UDHCPC_SCRIPT)
    client_ok("ip", "netns", "exec", link.ns, "udhcpc", "-f", "-q", "-n", "-i", link.tap,
       "-s", str(script), "-t", "5", "-T", "1", timeout=30)  # fmt: skip
    assert link.addresses() == ["10.78.0.100/24"]
