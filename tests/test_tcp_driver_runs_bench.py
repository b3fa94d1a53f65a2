"""``bench/tcp_driver_runs.py`` counts what it says: every run of the driver is told by
its cause and counted once, idle runs among them, and the request/response loop's
figures are the ones its design gives (one reply frame a request, two runs a round)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_run_has_a_cause_and_the_request_loop_adds_up() -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "tcp_driver_runs.py"), "--hosts", "4",
           "--conns", "8", "--seconds", "4", "--rounds", "110"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    assert "sim: per echo" in out and "reqresp: per request" in out
    res = json.loads((ROOT / "bench" / "results" / "tcp_driver_runs.json").read_text())
    sim = res["sim"]["this tree"]
    c = sim["counts"]
    assert sim["units"] > 8  # echoes
    assert c["runs"] == sum(v for k, v in c.items() if k.startswith("run: "))
    assert c["idle runs"] == sum(v for k, v in c.items() if k.startswith("idle: "))
    assert 0 < c["idle runs"] < c["runs"]
    assert "run: ?" not in c  # every run's cause known
    assert c["frames sent"] >= 2 * sim["units"]  # a ping and its echo, at least
    assert c["timer fires"] >= c["timer fires with no connection due"]
    req = res["reqresp"]["this tree"]
    r = req["counts"]
    assert req["units"] == 16 * 10
    assert r["frames sent"] == req["units"]  # one reply a request
    assert r["runs"] == 2 * 10  # a round: the batch's run, and the replies' run
    assert r.get("idle runs", 0) == 0
