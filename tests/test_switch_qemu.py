"""A real QEMU guest on ``miragekit switch``: DHCP from a miragekit stack, ping to it and to
a kernel namespace, TCP with both, over ``-netdev stream`` (and ``-netdev dgram``).

The guest is Debian's kernel (package linux-image-amd64) with an initramfs this test
builds from the static busybox (package busybox-static) and the kernel's virtio modules.
It boots under TCG, QEMU's software emulation: nested KVM is not dependable in CI
machines (here it aborts setting an MSR), and the boot takes ~20 s without it.
"""

from __future__ import annotations

import glob
import gzip
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.netns import namespaces, sh, tag
from tests.switchproc import switch_process

pytestmark = [pytest.mark.kernel, pytest.mark.vm]

STACK_IP = "10.81.0.1"
KERNEL_IP = "10.81.0.2"
MODULES = ("virtio_pci", "virtio_net")

INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod /lib/$m; done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /lease.sh -n -q -t 20 -T 1 && echo "LEASE $(ip -4 -o addr show eth0)"
ping -c 3 -W 3 {STACK_IP} && echo PING-STACK-OK
ping -c 3 -W 3 {KERNEL_IP} && echo PING-KERNEL-OK
echo "TCP-REPLY $(echo from-guest | nc -w 5 {KERNEL_IP} 7000)"
echo "TCP-ECHO $(echo to-stack | nc -w 5 {STACK_IP} 7)"
echo GUEST-DONE
poweroff -f
"""

LEASE = """#!/bin/sh
[ "$1" = bound ] && ip addr add "$ip/$mask" dev "$interface"
exit 0
"""


TCP_SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000))
s.listen(4)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    with c:
        c.sendall(b"from-kernel:" + c.recv(100))
"""


def _kernel() -> tuple[Path, Path]:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        pytest.fail("no /boot/vmlinuz-*: install linux-image-amd64 (.ci/run lists it)")
    vmlinuz = Path(kernels[-1])
    version = vmlinuz.name.removeprefix("vmlinuz-")
    return vmlinuz, Path("/lib/modules") / version


def _module_files(moddir: Path) -> list[str]:
    """The modules MODULES need, dependencies first (from modules.dep)."""
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.split(".")[0]: m for m in deps}
    order: list[str] = []

    def add(mod: str) -> None:
        for d in reversed(deps[mod]):
            add(d)
        if mod not in order:
            order.append(mod)

    for name in MODULES:
        add(by_name[name])
    return order


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data); the kernel unpacks it as the initramfs."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields)
        out += name.encode() + b"\0"
        out += bytes(-len(out) % 4) + data
        out += bytes(-len(out) % 4)
    return bytes(out)


def build_initramfs(path: Path, moddir: Path) -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    if b"/ld-linux" in Path(busybox).read_bytes()[:4096]:  # an ELF interpreter: dynamic
        pytest.fail(f"{busybox} is not static: install busybox-static (.ci/run lists it)")
    mods = _module_files(moddir)
    d, f, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755
    entries = [(n, d, b"") for n in ("bin", "proc", "sys", "dev", "lib")]
    entries += [
        ("bin/busybox", x, Path(busybox).read_bytes()),
        ("init", x, INIT.encode()),
        ("lease.sh", x, LEASE.encode()),
        ("modules", f, "\n".join(Path(m).name for m in mods).encode() + b"\n"),
    ]
    entries += [(f"lib/{Path(m).name}", f, (moddir / m).read_bytes()) for m in mods]
    path.write_bytes(gzip.compress(_cpio(entries), 1))


def boot(tmp_path: Path, netdev: str, timeout: float = 240) -> tuple[str, float]:
    """Boot the guest with ``netdev``; its console output and the seconds it took."""
    vmlinuz, moddir = _kernel()
    initrd = tmp_path / "initrd.gz"
    build_initramfs(initrd, moddir)
    qemu = shutil.which("qemu-system-x86_64")
    assert qemu, "qemu-system-x86_64 is missing: install qemu-system-x86 (.ci/run lists it)"
    t0 = time.monotonic()
    cmd = [qemu, "-machine", "accel=tcg", "-m", "256", "-smp", "1", "-nographic"]
    cmd += ["-no-reboot", "-nodefaults", "-serial", "stdio", "-kernel", str(vmlinuz)]
    cmd += ["-initrd", str(initrd), "-append", "console=ttyS0 panic=-1 quiet loglevel=3"]
    cmd += ["-netdev", netdev]
    cmd += ["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:6d:6b:01,romfile="]
    p = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p.stdout + p.stderr, time.monotonic() - t0


def _check_guest(console: str, seconds: float) -> None:
    print(f"guest ran {seconds:.1f} s")
    assert "GUEST-DONE" in console, console[-3000:]
    lease = re.search(r"LEASE .*inet (10\.81\.0\.(\d+))/24", console)
    assert lease and 100 <= int(lease.group(2)) <= 150, console[-3000:]
    assert "PING-STACK-OK" in console, console[-3000:]
    assert "PING-KERNEL-OK" in console, console[-3000:]
    assert "TCP-REPLY from-kernel:from-guest" in console, console[-3000:]
    assert "TCP-ECHO to-stack" in console, console[-3000:]


@pytest.mark.parametrize("kind", ["qemu-stream", "qemu-dgram"])
def test_qemu_guest_gets_a_lease_and_pings(tmp_path: Path, kind: str) -> None:
    t = tag()
    sock = str(tmp_path / "vm.sock")
    with namespaces("k") as (k,):
        ports = [
            f"--port=vm={kind}:{sock}",
            f"--port=srv=stack:{STACK_IP}/24,dhcp=10.81.0.100-10.81.0.150,echo=7",
            f"--port=k=tap:mk-{t}k,netns={k}",
        ]
        with switch_process(*ports, control=str(tmp_path / "ctl")) as sw:
            sh("ip", "-n", k, "addr", "add", f"{KERNEL_IP}/24", "dev", f"mk-{t}k")
            sh("ip", "-n", k, "link", "set", f"mk-{t}k", "up")
            server = subprocess.Popen(
                ["ip", "netns", "exec", k, sys.executable, "-c", TCP_SERVER],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert server.stdout is not None and server.stdout.readline().strip() == "listening"
            if kind == "qemu-stream":
                netdev = f"stream,id=n0,server=off,addr.type=unix,addr.path={sock}"
            else:
                guest = str(tmp_path / "guest.sock")
                netdev = (
                    f"dgram,id=n0,local.type=unix,local.path={guest},"
                    f"remote.type=unix,remote.path={sock}"
                )
            console, seconds = boot(tmp_path, netdev)
            _check_guest(console, seconds)
            if kind == "qemu-stream":  # a restarted VM connects again to the same port
                console, seconds = boot(tmp_path, netdev)
                _check_guest(console, seconds)
            c = sw.counters("vm")
            server.kill()
            server.wait()
        assert c["in_frames"] >= 8 and c["out_frames"] >= 8
        assert c["dev_connects"] == (2 if kind == "qemu-stream" else 1)
