"""Test helpers: a ``miragekit switch`` process, its control client, UDP probes in namespaces.

Shared by the switch's kernel, VXLAN and QEMU tests (tests/test_switch_*.py).
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.netns import namespaces, sh, tag

SWITCH = [sys.executable, "-m", "miragekit", "switch"]


@dataclass
class SwitchProc:
    proc: subprocess.Popen[str]
    ready: str
    control: str | None = None
    out: str = ""
    err: str = ""
    rc: int | None = None

    def ctl(self, *words: str) -> dict[str, Any]:
        """One control command through ``miragekit switch ctl``; its JSON reply."""
        assert self.control is not None
        p = subprocess.run(
            [*SWITCH, "ctl", self.control, *words], capture_output=True, text=True, timeout=20
        )
        assert p.returncode == 0, p.stderr
        reply: dict[str, Any] = json.loads(p.stdout)
        return reply

    def counters(self, port: str) -> dict[str, int]:
        c: dict[str, int] = self.ctl("stats")["ports"][port]
        return c

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop it with ``sig``; its exit status (stdout and stderr kept in out/err)."""
        if self.rc is None:
            self.proc.send_signal(sig)
            out, err = self.proc.communicate(timeout=20)
            self.out, self.err, self.rc = out, err, self.proc.returncode
        return self.rc


@contextmanager
def switch_process(*args: str, control: str | None = None) -> Iterator[SwitchProc]:
    """``miragekit switch ARGS`` until it says it is ready; stopped (SIGTERM) on exit."""
    extra = ["--control", control] if control else []
    proc = subprocess.Popen(
        [*SWITCH, *args, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        if "ready" not in line:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"switch did not start: {line}{out}{err}")
        sp = SwitchProc(proc, line, control)
        yield sp
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@dataclass
class Pair:
    """Two namespaces ``a`` (10.79.0.1) and ``b`` (10.79.0.2) on TAP ports of a switch."""

    ns: list[str]
    taps: list[str]
    sw: SwitchProc
    macs: list[str] = field(default_factory=list)

    def configure(self, *, static_arp: bool = True) -> None:
        for i, (ns, tap) in enumerate(zip(self.ns, self.taps, strict=True)):
            sh("ip", "-n", ns, "addr", "add", f"10.79.0.{i + 1}/24", "dev", tap)
            sh("ip", "-n", ns, "link", "set", tap, "up")
            self.macs.append(link_mac(ns, tap))
        if static_arp:  # no ARP frames: the UDP probes are the only frames on the links
            for i, ns in enumerate(self.ns):
                j = 1 - i
                sh(*_neigh(ns, f"10.79.0.{j + 1}", self.macs[j], self.taps[i]))


def _neigh(ns: str, ip: str, mac: str, dev: str) -> list[str]:
    return ["ip", "-n", ns, "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent"]


def link_mac(ns: str, dev: str) -> str:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "link", "show", dev], capture_output=True, text=True, check=True
    ).stdout
    mac: str = json.loads(out)[0]["address"]
    return mac


@contextmanager
def tap_pair(*args: str, control: str | None = None) -> Iterator[Pair]:
    """Namespaces a and b, each with a TAP the switch creates in it (ports a and b)."""
    t = tag()
    with namespaces("a", "b") as ns:
        taps = [f"mk-{t}a", f"mk-{t}b"]
        ports = [f"--port=a=tap:{taps[0]},netns={ns[0]}", f"--port=b=tap:{taps[1]},netns={ns[1]}"]
        with switch_process(*ports, *args, control=control) as sw:
            yield Pair(ns, taps, sw)


# A UDP receiver and a paced sender, run in namespaces with the venv's Python.
RECEIVER = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("bound", flush=True)
s.settimeout(float(sys.argv[2]))
got = []
try:
    while True:
        got.append(int.from_bytes(s.recv(2048)[:4], "big"))
except TimeoutError:
    pass
print(json.dumps(got), flush=True)
"""

SENDER = r"""
import socket, sys, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pad = bytes(100)
for i in range(n):
    s.sendto(i.to_bytes(4, "big") + pad, (dst, port))
    if i % 20 == 19:
        time.sleep(0.002)  # paced: no queue on the way may overflow
"""


def udp_probe(src_ns: str, dst_ns: str, dst_ip: str, n: int, port: int = 5555) -> list[int]:
    """Send datagrams 0..n-1 from ``src_ns`` to ``dst_ip``; the sequence numbers received."""
    recv = subprocess.Popen(
        ["ip", "netns", "exec", dst_ns, sys.executable, "-c", RECEIVER, str(port), "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recv.stdout is not None
    assert recv.stdout.readline().strip() == "bound"
    sh("ip", "netns", "exec", src_ns, sys.executable, "-c", SENDER, dst_ip, str(port), str(n))
    out, _ = recv.communicate(timeout=60)
    got: list[int] = json.loads(out)
    return got


def snmp(ns: str, proto: str, key: str) -> int:
    """A kernel counter of ``/proc/net/snmp`` (e.g. Udp InDatagrams) in namespace ``ns``."""
    text = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split() for line in text.splitlines() if line.startswith(proto + ":")]
    return int(rows[1][rows[0].index(key)])


def nstat(ns: str) -> dict[str, int]:
    """Every kernel counter (``nstat -az``, absolute values) in namespace ``ns``."""
    text = subprocess.run(
        ["ip", "netns", "exec", ns, "nstat", "-asz", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(text)
    out: dict[str, int] = {}
    for table in data.values():
        out.update({k: int(v) for k, v in table.items()})
    return out


def wait_until(pred: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())
