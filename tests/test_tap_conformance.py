"""The NETWORK conformance suite on TapNetif: two TAP devices bridged by the kernel in a
``mk-`` namespace (the script runs inside it, so the devices never touch the host)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.netns import namespaces

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent


def test_tap_netif_pair_conforms() -> None:
    with namespaces("tapconf") as (ns,):
        p = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.tap_pair_conformance"],
            cwd=ROOT,
            env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "TapNetif pair conforms"
