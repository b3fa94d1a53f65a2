"""Several processes on one VXLAN segment over loopback: each runs examples/vxlan_chat
(through tests/vxlan/peer.py, as the runner will) and hears the others' broadcasts.

Members share one UDP port on distinct loopback addresses 127.A.B.1..3, as VTEPs share
port 4789 on distinct hosts; every member is given the same member list."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

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


def test_three_processes_chat() -> None:
    r = uuid.uuid4().bytes
    base = f"127.{r[0]}.{r[1] | 1}"  # a random /24 of loopback, unlikely to be in use
    members = [f"{base}.{i}" for i in (1, 2, 3)]
    port = 20000 + int.from_bytes(r[2:4], "big") % 40000
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
