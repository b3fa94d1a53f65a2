"""examples/dns_server on our stack over TAP, asked by the kernel's dig; and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.apprun import ROOT, app_namespace, running

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
