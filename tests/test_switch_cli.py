"""``miragekit switch`` refuses bad input with one line and exit status 2, leaving nothing
half-started (no TAP device, no socket path); the control socket refuses bad commands."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
from tests.netns import namespaces, tag
from tests.switchproc import SWITCH, switch_process


def refused(*args: str) -> str:
    """Run the switch with ``args``; assert exit 2 and one clean line; that line."""
    p = subprocess.run([*SWITCH, *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr and "Unknown(" not in p.stderr, p.stderr
    assert p.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--port", "a=foo:x"], "kind 'foo'"),
        (["--port", "a"], "expected NAME=KIND:SPEC"),
        (["--port", "a=tap:x,mtu=9"], "option 'mtu=9'"),
        (["--port", "a=vxlan:42"], "vxlan spec"),
        (["--port", "a=stack:10.0.0.1"], "prefix"),
        (["--port", "a=stack:10.0.0.1/24,dhcp=10.0.1.1-10.0.1.9"], "not inside"),
        (["--port", "a=stack:10.0.0.1/24,echo=0"], "option 'echo=0'"),
        (["--port", "a=qemu-dgram:/tmp/x", "--port", "a=qemu-dgram:/tmp/y"], "already exists"),
        (["--port", "a=qemu-dgram:/tmp/x", "--link", "b:loss=0.1"], "no port named 'b'"),
        (["--port", "a=qemu-dgram:/tmp/x", "--link", "a:lose=0.1"], "'lose' is unknown"),
        ([], "at least one --port"),
        (["--port", "a=qemu-dgram:/tmp/x", "--stats", "0"], "--stats"),
    ],
)
def test_bad_arguments(args: list[str], names: str) -> None:
    line = refused(*args)
    assert line.startswith("miragekit switch: ") and names in line, line


@pytest.mark.kernel
def test_a_tap_that_cannot_be_opened_undoes_the_ports_before_it(tmp_path: Path) -> None:
    t = tag()
    with namespaces("a") as (ns,):
        sock = tmp_path / "vm.sock"
        line = refused(
            f"--port=a=tap:mk-{t}a,netns={ns}",
            f"--port=vm=qemu-stream:{sock}",
            "--port=bad=tap:lo",  # not a TAP device: TUNSETIFF refuses it
            f"--control={tmp_path / 'ctl'}",
        )
        assert "port bad (tap:lo)" in line and "TUNSETIFF" in line, line
        gone = subprocess.run(["ip", "-n", ns, "link", "show", f"mk-{t}a"], capture_output=True)
        assert gone.returncode != 0  # the TAP the switch made for port a is removed
        assert not sock.exists() and not (tmp_path / "ctl").exists()


@pytest.mark.kernel
def test_a_missing_namespace_is_named() -> None:
    line = refused(f"--port=a=tap:mk-{tag()}a,netns=mk-nonexistent")
    assert "network namespace 'mk-nonexistent'" in line, line


@pytest.mark.kernel
def test_a_qemu_socket_path_in_use(tmp_path: Path) -> None:
    t = tag()
    path = tmp_path / "vm.sock"
    with (
        namespaces("a") as (ns,),
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as owner,
    ):
        owner.bind(str(path))
        owner.listen(1)
        line = refused(f"--port=a=tap:mk-{t}a,netns={ns}", f"--port=vm=qemu-stream:{path}")
        assert "port vm" in line and "in use by another process" in line, line
        gone = subprocess.run(["ip", "-n", ns, "link", "show", f"mk-{t}a"], capture_output=True)
        assert gone.returncode != 0
        assert path.exists()  # the owner's socket is left alone


def test_a_stale_socket_path_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "vm.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # bound, never listening, then closed: a leftover file
    with switch_process(f"--port=vm=qemu-stream:{path}") as sw:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as vm:
            vm.connect(str(path))
        assert sw.stop() == 0
    assert not path.exists()


def test_control_commands_refused_with_the_field_named(tmp_path: Path) -> None:
    ctl = str(tmp_path / "ctl")
    with switch_process(f"--port=vm=qemu-dgram:{tmp_path / 'vm.sock'}", control=ctl) as sw:
        for words, names in [
            (['{"op": "heal", "x": 1}'], "unknown field 'x' in 'heal'"),
            (['{"op": "link", "port": "vm", "set": {"loss": 0.1}, "when": 3}'], "'when'"),
            (['{"op": "link", "port": "vm", "set": {"lose": 0.1}}'], "'lose' is unknown"),
            (['{"op": "link", "port": "vm", "set": {"loss": 0.5, "rate": -1}}'], "rate"),
            (['{"op": "link", "port": "zz", "set": {}}'], "no port named 'zz'"),
            (['{"op": "fly"}'], "op 'fly'"),
            (["partition", "vm", "nobody"], "no port named 'nobody'"),
            (["link", "vm"], "use stats, heal"),
            (["link", "vm", "loss=x"], "not a number"),
        ]:
            p = subprocess.run([*SWITCH, "ctl", ctl, *words], capture_output=True, text=True)
            assert p.returncode == 2 and names in p.stderr, (words, p.stderr)
            assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
        # Nothing changed: a refused request sets none of its settings.
        link = sw.ctl("link", "vm", "latency=0")["link"]
        assert link["loss"] == 0 and link["rate"] is None
        assert sw.ctl("link", "vm", "loss=0.25,rate=1M")["link"]["rate"] == 1e6
        assert sw.stop() == 0
    p = subprocess.run([*SWITCH, "ctl", ctl, "stats"], capture_output=True, text=True)
    assert p.returncode == 2 and ctl in p.stderr  # the switch is gone: named, one line


def test_stats_every_s_seconds_reset_and_counters_at_exit(tmp_path: Path) -> None:
    ctl = str(tmp_path / "ctl")
    args = (f"--port=vm=qemu-dgram:{tmp_path / 'vm.sock'}", "--stats", "0.2")
    with switch_process(*args, control=ctl) as sw:
        # A frame from a "VM" (a datagram socket at its own path) is counted in.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as vm:
            vm.bind(str(tmp_path / "guest.sock"))
            vm.sendto(bytes(60), str(tmp_path / "vm.sock"))
        time.sleep(1.2)
        assert sw.counters("vm")["in_frames"] == 1
        assert sw.ctl("reset") == {"ok": True}
        assert sw.counters("vm")["in_frames"] == 0
        assert sw.stop() == 0
    lines = [x for x in sw.out.splitlines() if x.startswith("port vm: ")]
    assert len(lines) >= 4, sw.out  # several periodic reports and the one at exit
    assert "in 1 frames 60 B" in sw.out and lines[-1].startswith("port vm: in 0 frames")
