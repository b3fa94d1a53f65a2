"""Several processes on one VXLAN segment over loopback.

Members share one UDP port on distinct loopback addresses 127.A.B.1..3, as VTEPs share
port 4789 on distinct hosts; every member is given the same member list. One test runs
examples/vxlan_chat in each (through tests/vxlan/peer.py, as the runner will); the other
kills a member (SIGKILL) and starts it again, and the others reach it again."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def spawn(spec: str, rounds: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.vxlan.peer", spec, str(rounds)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def segment() -> tuple[list[str], int]:
    """Three loopback addresses in a random 127.A.B.0/24 and a random port."""
    r = uuid.uuid4().bytes
    base = f"127.{r[0]}.{r[1] | 1}"
    return [f"{base}.{i}" for i in (1, 2, 3)], 20000 + int.from_bytes(r[2:4], "big") % 40000


def test_three_processes_chat() -> None:
    members, port = segment()
    procs = [spawn(f"vxlan:42@{m}:{port},{','.join(members)}", rounds=6) for m in members]
    for p in procs:  # all bound: start them together
        assert p.stderr is not None
        assert p.stderr.readline() == b"ready\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
    outs: list[tuple[str, dict[str, dict[str, int]]]] = []
    for p in procs:
        try:
            raw, err = p.communicate(timeout=30)
        finally:
            p.kill()
        assert p.returncode == 0, err.decode()
        outs.append((raw.decode(), json.loads(err.decode().strip().splitlines()[-1])))
    ips = []
    for text, _ in outs:
        m = re.search(r"^(10\.42\.\d+\.\d+) on \S+ joined", text, re.M)
        assert m, text
        ips.append(m.group(1))
    assert len(set(ips)) == 3
    for i, (text, info) in enumerate(outs):
        heard = set(re.findall(r"^(10\.42\.\d+\.\d+) says hello #\d+ from \1", text, re.M))
        # The members start at slightly different times; later rounds reach everyone.
        assert heard == set(ips) - {ips[i]}, text
        c = info["counters"]
        assert c["rx_bad_vni"] == c["rx_short"] == c["rx_bad_flags"] == 0
        assert c["rx_looped"] == 0  # we are not our own remote
        assert c["learned"] >= 2 and info["stats"]["rx_pkts"] > 0


class Member:
    """A tests/vxlan/member.py process, spoken to line by line."""

    def __init__(self, spec: str, cidr: str) -> None:
        env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "tests.vxlan.member", spec, cidr],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.ask(None) == "ready"

    def ask(self, cmd: str | None) -> str:
        assert self.p.stdin is not None and self.p.stdout is not None
        if cmd is not None:
            self.p.stdin.write(cmd + "\n")
            self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def stop(self) -> None:
        self.p.kill()
        self.p.wait()
        for f in (self.p.stdin, self.p.stdout):
            if f is not None:
                f.close()


def test_a_killed_member_is_reached_again_after_restart() -> None:
    members, port = segment()
    ips = [f"10.43.0.{i}" for i in (1, 2, 3)]
    specs = [f"vxlan:43@{m}:{port},{','.join(members)}" for m in members]
    procs = [Member(spec, f"{ip}/24") for spec, ip in zip(specs, ips, strict=True)]
    try:
        for i, j in itertools.permutations(range(3), 2):
            assert procs[i].ask(f"udp {ips[j]}") == f"ok {ips[j]}"
        assert procs[0].ask(f"ping {ips[2]}") == f"ok {ips[2]}"
        old_mac = procs[2].ask("mac")
        procs[2].stop()  # SIGKILL: no goodbye
        assert procs[0].ask(f"udp {ips[2]}") == f"timeout {ips[2]}"
        procs[2] = Member(specs[2], f"{ips[2]}/24")  # same address, a new MAC
        assert procs[2].ask("mac") != old_mac
        for i, j in ((0, 2), (1, 2), (2, 0), (2, 1)):
            assert procs[i].ask(f"udp {ips[j]}") == f"ok {ips[j]}"
            assert procs[i].ask(f"ping {ips[j]}") == f"ok {ips[j]}"
        c = json.loads(procs[0].ask("counters"))
        assert c["rx_bad_vni"] == c["rx_short"] == c["rx_looped"] == 0 and c["learned"] >= 3
    finally:
        for m in procs:
            m.stop()


def status(m: Member) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(m.ask("tcp-status"))
    return got


def wait_until(what: str, cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


RESET = "error Unknown(msg='connection reset by peer')"


def test_tcp_between_members_recovers_after_a_kill() -> None:
    """Every member connects to every other with our TCP; member 2 is killed (SIGKILL)
    and started again. While it is gone, a write on a connection to it is given up after
    the retransmissions and a connect times out. Once it is back, new connections to and
    from it work; a write on an old connection meets RST; and the old connections it had
    opened to the others end in RST too. (Today its new connections come from the same
    ephemeral ports, the others answer those SYNs with a challenge ACK, RFC 5961 4, and
    the new process resets what it does not know; with other ports, the others'
    keepalive probe would meet the RST.) Nothing is left but live connections."""
    members, port = segment()
    ips = [f"10.44.0.{i}" for i in (1, 2, 3)]
    specs = [f"vxlan:44@{m}:{port},{','.join(members)}" for m in members]
    procs = [Member(spec, f"{ip}/24") for spec, ip in zip(specs, ips, strict=True)]
    try:
        for p in procs:
            assert p.ask("tcp-listen 7") == "ok"
        flows: dict[tuple[int, int], str] = {}
        for i, j in itertools.permutations(range(3), 2):
            r = procs[i].ask(f"tcp-connect {ips[j]} 7")
            assert r.startswith("ok "), r
            flows[i, j] = r.split()[1]
            assert procs[i].ask(f"tcp-send {flows[i, j]} hello {i}>{j}") == f"ok hello {i}>{j}"
        time.sleep(0.3)  # past the delayed ACKs: every connection idle, nothing in flight

        procs[2].stop()  # SIGKILL: no FIN, no RST
        t0 = time.monotonic()
        assert procs[0].ask(f"tcp-send {flows[0, 2]} anyone?") == "error Timeout()"
        assert procs[0].ask(f"tcp-connect {ips[2]} 7") == "error Timeout()"
        assert time.monotonic() - t0 < 8  # bounded by the short retransmission timers

        procs[2] = Member(specs[2], f"{ips[2]}/24")
        assert procs[2].ask("tcp-listen 7") == "ok"
        # A write on an old connection reaches the new process, which answers RST.
        assert procs[1].ask(f"tcp-send {flows[1, 2]} still there?") == RESET
        for i, j in ((0, 2), (1, 2), (2, 0), (2, 1)):
            r = procs[i].ask(f"tcp-connect {ips[j]} 7")
            assert r.startswith("ok "), r
            assert procs[i].ask(f"tcp-send {r.split()[1]} again {i}>{j}") == f"ok again {i}>{j}"
        # Connections between the survivors never noticed.
        assert procs[0].ask(f"tcp-send {flows[0, 1]} fine") == "ok fine"
        assert procs[1].ask(f"tcp-send {flows[1, 0]} fine") == "ok fine"

        for k in (0, 1):
            m = procs[k]
            wait_until(
                f"member {k}'s connection from the old member 2 never ended",
                lambda m=m: sum(status(m)["ended"].values()) == 1,  # type: ignore[misc]
                timeout=15,
            )
            s = status(m)
            assert s["served"] == 3 and s["ended"] == {RESET: 1}, s
            assert s["stats"]["bad_checksum"] == s["stats"]["malformed"] == 0, s
            # Ours and theirs to each of the two others; the dead ones are gone.
            assert s["connections"] == s["flows"] == 4, s
        assert status(procs[2])["stats"]["rst_sent"] >= 1
    finally:
        for m in procs:
            m.stop()
