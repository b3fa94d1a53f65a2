"""The examples on miragekit's stack over a TAP device, inside a ``mk-`` network namespace.

The namespace holds a persistent TAP device whose kernel side is 10.78.0.1/24; the runner
runs inside the namespace (``ip netns exec``), attaches to the device with
``--net tap:NAME`` and gives the application's stack 10.78.0.2. Real clients in the
namespace (curl, socat) reach the application directly through the kernel and the TAP,
and through ``--forward`` (127.0.0.1:HOSTPORT -> the kernel -> the TAP -> our stack).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.apprun import ROOT, SITE, AppNs, app_namespace, running, sh
from tests.netns import sh as ip_sh

pytestmark = pytest.mark.kernel

KERNEL_IP = "10.78.0.1"
APP_IP = "10.78.0.2"


Ns = AppNs


@pytest.fixture
def ns() -> Iterator[Ns]:
    with app_namespace("app", KERNEL_IP) as n:
        yield n


def test_static_website_on_tap(ns: Ns, tmp_path: Path) -> None:
    kv = tmp_path / "kv"
    kv.mkdir()
    (kv / "index.html").write_bytes((SITE / "index.html").read_bytes())
    big = os.urandom(20 * 1000 * 1000)
    (kv / "big.bin").write_bytes(big)
    args = ["--net", f"tap:{ns.tap}", "--ip", f"{APP_IP}/24", "--forward", "0:80", "--kv", str(kv)]
    with running("examples/static_website", *args, netns=ns.name,
                 ready="serving the store on http://10.78.0.2:80/") as r:  # fmt: skip
        (port,) = r.forwarded()
        for base in (f"http://{APP_IP}", f"http://127.0.0.1:{port}"):
            fmt = r"%{http_code} %{num_connects} %{size_download}\n"
            out = ns.run("curl", "-sS", "-w", fmt, "-o", "/dev/null", f"{base}/",
                         "-o", "/dev/null", f"{base}/")  # fmt: skip
            size = (SITE / "index.html").stat().st_size
            assert out.decode().splitlines() == [f"200 1 {size}", f"200 0 {size}"]
            head = ns.run("curl", "-sSI", f"{base}/big.bin").decode().lower()
            assert f"content-length: {len(big)}\r\n" in head
            code = ns.run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/nope")
            assert code == b"404"
            got = tmp_path / "got.bin"
            ns.run("curl", "-sS", "-o", str(got), f"{base}/big.bin")
            assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(big).digest()
        assert r.count(r'"GET /big\.bin" 200 20000000$') == 2
        assert r.count(r'"HEAD /big\.bin" 200 ') == 2


def test_echo_on_tap_with_socat(ns: Ns, tmp_path: Path) -> None:
    pcap = tmp_path / "tap.pcap"
    args = ["--net", f"tap:{ns.tap}", "--ip", f"{APP_IP}/24", "--forward", "0:7"]
    args += ["--pcap", str(pcap)]
    with running("examples/echo", *args, netns=ns.name,
                 ready="echo: TCP\\+UDP echo on 10.78.0.2 port 7") as r:  # fmt: skip
        (port,) = r.forwarded()
        data = os.urandom(200_000)
        for addr in (f"TCP:{APP_IP}:7", f"TCP:127.0.0.1:{port}"):
            assert ns.run("socat", "-t", "10", "-", addr, input=data) == data
        assert ns.run("socat", "-t", "2", "-", f"UDP:{APP_IP}:7", input=b"udp hi") == b"udp hi"
        assert ns.run("socat", "-t", "1", "-", f"TCP:{APP_IP}:9", input=data) == b""
    # The capture, read by tshark: the UDP echo both ways, and TCP on ports 7 and 9.
    out = sh("tshark", "-r", str(pcap), "-T", "fields", "-e", "udp.srcport", "-Y", "udp")
    request, reply = out.split()  # the kernel's socat from a free port, our echo from 7
    assert reply == b"7" and request != b"7"
    tcp = sh("tshark", "-r", str(pcap), "-Y", "tcp.port == 7 || tcp.port == 9").splitlines()
    assert len(tcp) > 2 * len(data) // 1500


def test_tap_that_is_not_a_tap_is_one_clear_line() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "miragekit", "run", "examples/echo",
         "--net", "tap:lo"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        "miragekit: --net tap:lo: TUNSETIFF 'lo': Invalid argument "
        "(is there another kind of interface named lo?)"
    ]


def test_asyncio_echo_on_tap(ns: Ns) -> None:
    args = ["--net", f"tap:{ns.tap}", "--ip", f"{APP_IP}/24"]
    with running("examples/asyncio_echo", *args, netns=ns.name,
                 ready="asyncio_echo: an asyncio handler on 10.78.0.2"):  # fmt: skip
        out = ns.run("socat", "-t", "10", "-", f"TCP:{APP_IP}:7007", input=b"tap\nquit\n")
        assert out == f"hello {KERNEL_IP}, send lines; 'quit' to end\n1: TAP\nbye\n".encode()


NOBODY_PYTHONS = (os.path.realpath(sys.executable), "/usr/bin/python3")
_python: list[str] = []
_tree: list[Path] = []  # a copy of src/ and examples/ that nobody can read


def _as_nobody(*args: str, netns: str | None = None) -> list[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    py = _python[0] if _python else NOBODY_PYTHONS[0]
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return [*prefix, *drop, "env", f"PYTHONPATH={_tree[0] / 'src'}", py, *args]


@pytest.fixture
def readable_tree() -> Iterator[Path]:
    """The checkout may sit where nobody cannot read (root's home in CI): copy what the
    application needs (the package and the example) to a world-readable directory."""
    d = Path(tempfile.mkdtemp(prefix="mk-nobody-"))
    try:
        shutil.copytree(ROOT / "src" / "miragekit", d / "src" / "miragekit")
        shutil.copytree(ROOT / "examples" / "echo", d / "examples" / "echo")
        for path in (d, *d.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        _tree[:] = [d]
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_without_root_a_user_owned_tap_works_and_creating_one_is_a_clear_error(
    ns: Ns, readable_tree: Path
) -> None:
    """The point of ``ip tuntap add ... user``: the application then needs no privilege
    (not even for port 7: it is our stack's port, not the host's)."""
    errors = []
    for py in NOBODY_PYTHONS:  # miragekit needs only the standard library of Python 3.11
        _python[:] = [py]
        probe = subprocess.run(_as_nobody("-c", "import miragekit"), capture_output=True)
        if probe.returncode == 0:
            break
        errors.append(probe.stderr)
    else:
        pytest.fail(f"no Python 3.11 that user nobody can run: {errors!r}")
    p = subprocess.run(
        _as_nobody("-m", "miragekit", "run", "examples/echo", "--net", "tap:mk-none"),
        cwd=readable_tree, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert p.returncode == 2
    # The kernel's own words differ between kernels ("TUNSETIFF ...: Operation not
    # permitted", "/dev/net/tun: Permission denied"): any of them, on one line, with the
    # device named and the way out.
    [err] = p.stderr.splitlines()
    assert err.startswith("miragekit: --net tap:mk-none: "), err
    assert "Traceback" not in p.stderr and "Unknown(" not in err, err
    assert err.endswith(
        "(creating or opening a TAP device needs root or CAP_NET_ADMIN; or create it "
        "first: ip tuntap add mode tap user $USER name mk-none)"
    ), err
    tap = f"mk-u{ns.tap[4:]}"
    ip_sh("ip", "-n", ns.name, "tuntap", "add", "mode", "tap", "user", "65534", "name", tap)
    ip_sh("ip", "-n", ns.name, "addr", "add", "10.79.0.1/24", "dev", tap)
    ip_sh("ip", "-n", ns.name, "link", "set", tap, "up")
    cmd = _as_nobody("-m", "miragekit", "run", "examples/echo", "--net", f"tap:{tap}",
                     "--ip", "10.79.0.2/24", netns=ns.name)  # fmt: skip
    with subprocess.Popen(
        cmd, cwd=readable_tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert b"echo: TCP+UDP echo on 10.79.0.2 port 7" in line, line
            assert ns.run("socat", "-t", "5", "-", "TCP:10.79.0.2:7", input=b"hi\n") == b"hi\n"
        finally:
            proc.terminate()
            assert proc.wait(timeout=20) == 0


def test_static_website_configured_by_dnsmasq(ns: Ns, tmp_path: Path) -> None:
    """``--dhcp``: dnsmasq in the namespace leases the address; curl fetches the website at
    it; on Ctrl-C the runner releases the lease (dnsmasq logs DHCPRELEASE)."""
    log = tmp_path / "dnsmasq.log"
    dnsmasq = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, "/usr/sbin/dnsmasq", "--no-daemon", "--port=0",
         "--conf-file=/dev/null", "--user=root", f"--interface={ns.tap}", "--bind-interfaces",
         f"--pid-file={tmp_path / 'pid'}", "--dhcp-range=10.78.0.50,10.78.0.59,255.255.255.0,120s",
         f"--dhcp-leasefile={tmp_path / 'leases'}", "--log-dhcp", f"--log-facility={log}",
         "--no-ping"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        args = ["--net", f"tap:{ns.tap}", "--dhcp", "--kv", str(SITE)]
        with running("examples/static_website", *args, netns=ns.name,
                     ready=r"serving the store on http://10\.78\.0\.5\d:80/") as r:  # fmt: skip
            m = r.wait_for(r"serving the store on http://(10\.78\.0\.5\d):80/")
            addr = m.group(1)
            page = ns.run("curl", "-sS", "--max-time", "20", f"http://{addr}/")
            assert page == (SITE / "index.html").read_bytes()
            assert f"DHCPACK({ns.tap}) {addr}" in log.read_text()
        for _ in range(50):
            if "DHCPRELEASE" in log.read_text():
                break
            time.sleep(0.1)
        assert f"DHCPRELEASE({ns.tap}) {addr}" in log.read_text()
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(timeout=10)
