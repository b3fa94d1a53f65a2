"""The runner's --dhcp and --net vxlan: options checked, stacks built and reachable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SHOW_IP = """
from miragekit import v1

async def start(console: v1.Console, stack: v1.StackV4) -> None:
    await console.log_s("ip " + " ".join(str(a) for a in stack.ipv4().get_ip()))
"""


def miragekit(
    *args: str, timeout: float = 60, netns: str | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "miragekit", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def app(tmp_path: Path) -> str:
    d = tmp_path / "showip"
    d.mkdir()
    (d / "app.py").write_text(textwrap.dedent(SHOW_IP))
    return str(d)


def test_dhcp_on_the_virtual_switch_in_simulated_time(tmp_path: Path) -> None:
    p = miragekit("run", app(tmp_path), "--net", "vnet", "--dhcp", "--sim")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ip 10.0.0.100"


def test_vxlan_stack_built_from_the_spec(tmp_path: Path) -> None:
    a = app(tmp_path)
    p = miragekit("run", a, "--net", "vxlan:42@127.0.0.1:0,127.0.0.2:4789", "--ip", "10.42.0.7/24")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ip 10.42.0.7"
    d = miragekit("describe", a, "--net", "vxlan:42@127.0.0.1:0", "--ip", "10.42.0.7/24")
    assert "miragekit.link.VxlanNetif (vxlan:42@127.0.0.1:0)" in d.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--net", "socket", "--dhcp"], "--dhcp configures the direct stack"),
        (["--net", "vnet", "--dhcp", "--ip", "10.0.0.5/24"], "drop --ip/--gateway"),
        (["--net", "vnet", "--dhcp", "--forward", "8080:80"], "use --ip, not --dhcp"),
        (["--net", "vxlan:42@127.0.0.1:4789"], "the stack needs an address on the segment"),
        (["--net", "vxlan:nope", "--ip", "10.0.0.2/24"], "expected VNI@LOCAL_ADDR"),
        (
            ["--net", "vxlan:42@127.0.0.1:4789", "--ip", "10.0.0.2/24", "--forward", "80:80"],
            "not over VXLAN",
        ),
        (["--net", "vxlanx"], "use one of socket, vnet, tap"),
    ],
)
def test_misuse_is_one_clear_line(tmp_path: Path, argv: list[str], message: str) -> None:
    p = miragekit("run", app(tmp_path), *argv)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miragekit: "), p.stderr
    assert message in lines[0]
