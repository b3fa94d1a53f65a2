"""Running ``miragekit run APP ...`` in a subprocess for tests that drive it with real clients."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "static_website" / "site"
_FORWARD = re.compile(r"^miragekit: forwarding 127\.0\.0\.1:(\d+) -> ")


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread = field(init=False)

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\r\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first output line (stdout or stderr) matching ``pattern``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if m := rx.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader_alive()):
                    raise AssertionError(f"no line matching {pattern!r} in {self.lines}")
                self.cond.wait(min(left, 0.2))

    def _reader_alive(self) -> bool:
        return self._thread.is_alive()

    def forwarded(self) -> list[int]:
        """The host ports ``--forward`` bound (in the order given)."""
        self.wait_for(_FORWARD.pattern)
        return [int(m.group(1)) for line in list(self.lines) if (m := _FORWARD.match(line))]

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        with self.cond:
            return sum(1 for line in self.lines if rx.search(line))


@contextmanager
def running(
    app: str, *args: str, netns: str | None = None, ready: str | None = None
) -> Iterator[Running]:
    """Start the runner (inside ``netns`` if given); stop it with SIGTERM and expect 0."""
    prefix: Sequence[str] = ("ip", "netns", "exec", netns) if netns else ()
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "miragekit", "run", app, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    r = Running(proc)
    r._thread = threading.Thread(target=r._collect, daemon=True)
    r._thread.start()
    try:
        if ready is not None:
            r.wait_for(ready)
        yield r
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the runner did not stop on SIGTERM: {r.lines}") from None
        r._thread.join(5)
    assert rc == 0, (rc, r.lines)


def loopback_ip() -> str:
    """A loopback address of its own for a socket-stack test (privileged ports, parallel runs)."""
    rnd = random.Random(f"{os.getpid()}-{time.monotonic_ns()}")
    return f"127.{rnd.randrange(1, 255)}.{rnd.randrange(0, 256)}.{rnd.randrange(1, 255)}"


def sh(*args: str, input: bytes | None = None, timeout: float = 60.0) -> bytes:
    """Run a client; its stdout (``check=True``: a failing client fails the test)."""
    p = subprocess.run(args, input=input, capture_output=True, timeout=timeout, check=False)
    assert p.returncode == 0, (args, p.returncode, p.stderr.decode(errors="replace"))
    return p.stdout


def sh_err(*args: str, timeout: float = 60.0) -> tuple[bytes, str]:
    """Run a client; (stdout, stderr), failing on a non-zero exit."""
    p = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    assert p.returncode == 0, (args, p.returncode, p.stderr.decode(errors="replace"))
    return p.stdout, p.stderr.decode(errors="replace")


@dataclass
class AppNs:
    """A ``mk-`` namespace whose kernel side owns a persistent TAP device ``tap``: an
    application run with ``--net tap:TAP`` inside it attaches to the device."""

    name: str
    tap: str

    def run(self, *args: str, input: bytes | None = None, timeout: float = 60.0) -> bytes:
        return sh("ip", "netns", "exec", self.name, *args, input=input, timeout=timeout)


@contextmanager
def app_namespace(prefix: str, kernel_ip: str, kernel_ip6: str | None = None) -> Iterator[AppNs]:
    """``AppNs`` with ``kernel_ip``/24 on the kernel's side of the TAP (and, when given,
    ``kernel_ip6``/64 with duplicate address detection off; else IPv6 off); always
    deleted."""
    from tests.netns import require_root, tag
    from tests.netns import sh as ip_sh

    require_root()
    t = tag()
    n = AppNs(f"mk-{prefix}{t}", f"mk-{prefix[0]}{t}")
    ip_sh("ip", "netns", "add", n.name)
    try:
        for key in ("default", "all"):
            setting = "accept_dad=0" if kernel_ip6 else "disable_ipv6=1"
            n.run("sysctl", "-qw", f"net.ipv6.conf.{key}.{setting}")
        ns = ("ip", "-n", n.name)
        ip_sh(*ns, "tuntap", "add", "mode", "tap", "name", n.tap)
        ip_sh(*ns, "addr", "add", f"{kernel_ip}/24", "dev", n.tap)
        if kernel_ip6:
            ip_sh(*ns, "addr", "add", f"{kernel_ip6}/64", "dev", n.tap, "nodad")
        ip_sh(*ns, "link", "set", n.tap, "up")
        ip_sh(*ns, "link", "set", "lo", "up")
        yield n
    finally:
        subprocess.run(["ip", "netns", "del", n.name], capture_output=True)
