"""The runner's ``--ip6``: a dual-stack direct stack; misuse lines; the examples answering
on IPv6 over a TAP device in a ``mk-`` namespace (kernel tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.apprun import ROOT, SITE, AppNs, app_namespace, running
from tests.test_runner import write_app

from miragekit.cli import main

KERNEL_IP = "10.79.0.1"
APP_IP = "10.79.0.2"
KERNEL_IP6 = "fd00:79::1"
APP_IP6 = "fd00:79::2"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ip6", "fd00::2/64"], "--ip6 is for the direct stack"),
        (["--net", "vnet", "--ip6", "10.0.0.2/24"], "--ip6 10.0.0.2/24: not an IPv6 CIDR"),
        (["--net", "vnet", "--ip6", "bogus"], "--ip6 bogus: not an IPv6 CIDR (e.g. fd00::2/64)"),
        (["--net", "vnet", "--ip6", "fd00::2"], "--ip6 fd00::2: give the prefix length"),
        (["--net", "vnet", "--ip6", "fe80::2/64"], "the link-local address is always on"),
        (["--net", "vnet", "--ip6", "ff02::1/64"], "not a unicast address"),
        (["--net", "vnet", "--ip6", "::/64"], "not a unicast address"),
        (["--net", "vnet", "--ip6", "fd00::2/64", "--ip6", "fd00::2/64"], "given twice"),
    ],
)
def test_ip6_misuse_gives_one_clear_line(tmp_path: Path, argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "miragekit", "run", str(ROOT / "examples" / "echo"), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("miragekit: --ip6")
    assert message in lines[0]


def test_describe_shows_ipv6(capsys: pytest.CaptureFixture[str]) -> None:
    echo = str(ROOT / "examples" / "echo")
    assert main(["describe", echo, "--net", "vnet", "--ip6", "fd00::2/64", "--ip6", "slaac"]) == 0
    out = capsys.readouterr().out
    assert "DirectStackV4 (10.0.0.2/24; IPv6: link-local, fd00::2/64, slaac)" in out


SIM_APP6 = """
    from pathlib import Path
    from typing import Any, cast
    from miragekit import v1

    async def start(stack: v1.StackV4, time: v1.Time) -> None:
        ips = sorted(str(ip) for ip in cast(Any, stack).ipv6().get_ip())
        Path(__file__).with_name("result.txt").write_text(" ".join(ips))
"""


def test_sim_direct_stack_with_ip6(tmp_path: Path) -> None:
    d = write_app(tmp_path, SIM_APP6)
    argv = ["run", str(d), "--net", "vnet", "--sim", "--seed", "1", "--ip6", "fd00:1::5/64"]
    assert main(argv) == 0
    ips = (d / "result.txt").read_text().split()
    assert ips[0] == "fd00:1::5" and ips[1].startswith("fe80::") and len(ips) == 2


Ns6 = AppNs


@pytest.fixture
def ns6() -> Iterator[Ns6]:
    """A namespace with a persistent TAP: 10.79.0.1/24 and fd00:79::1/64 on the kernel side
    (the kernel's DAD off, so the address is usable at once)."""
    with app_namespace("r6", KERNEL_IP, KERNEL_IP6) as n:
        yield n


@pytest.mark.kernel
def test_echo_answers_on_both_families(ns6: Ns6) -> None:
    args = ["--net", f"tap:{ns6.tap}", "--ip", f"{APP_IP}/24", "--ip6", f"{APP_IP6}/64"]
    with running("examples/echo", *args, netns=ns6.name, ready="echo: TCP\\+UDP echo on"):
        data = os.urandom(300_000)
        for addr in (f"TCP6:[{APP_IP6}]:7", f"TCP4:{APP_IP}:7"):
            assert ns6.run("socat", "-t", "10", "-", addr, input=data) == data
        for addr in (f"UDP6:[{APP_IP6}]:7", f"UDP4:{APP_IP}:7"):
            assert ns6.run("socat", "-t", "2", "-", addr, input=b"udp hi") == b"udp hi"


@pytest.mark.kernel
def test_static_website_curl6(ns6: Ns6) -> None:
    args = ["--net", f"tap:{ns6.tap}", "--ip", f"{APP_IP}/24", "--ip6", f"{APP_IP6}/64"]
    with running("examples/static_website", *args, "--kv", str(SITE), netns=ns6.name,
                 ready="serving the store on") as r:  # fmt: skip
        index = (SITE / "index.html").read_bytes()
        assert ns6.run("curl", "-6", "-sS", "-g", f"http://[{APP_IP6}]/") == index
        assert ns6.run("curl", "-4", "-sS", f"http://{APP_IP}/") == index
        r.wait_for(f'{KERNEL_IP6} "GET /" 200')
        r.wait_for(f'{KERNEL_IP} "GET /" 200')


def test_sim_dhcp_stack_with_ip6(tmp_path: Path) -> None:
    d = write_app(tmp_path, SIM_APP6)
    argv = ["run", str(d), "--net", "vnet", "--sim", "--dhcp", "--ip6", "fd00:2::7/64"]
    assert main(argv) == 0
    assert (d / "result.txt").read_text().split()[0] == "fd00:2::7"


SLEEPY_APP = """
    from miragekit import v1

    async def start(stack: v1.StackV4, time: v1.Time) -> None:
        await time.sleep(3.0)
"""


def test_the_runner_prints_the_ipv6_addresses_and_mac_sets_the_link_local(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = write_app(tmp_path, SLEEPY_APP)
    argv = ["run", str(d), "--net", "vnet", "--sim", "--ip6", "fd00:1::5/64"]
    assert main([*argv, "--mac", "02:00:00:00:00:42"]) == 0
    err = capsys.readouterr().err
    # The link-local address from --mac (EUI-64), in the runner's one address report.
    assert "miragekit: IPv6 fe80::ff:fe00:42 (link-local), fd00:1::5 (static)" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mac", "02:00:00:00:00:42"], "--mac sets the direct stack's MAC"),
        (["--net", "vnet", "--mac", "nonsense"], "--mac nonsense: not a MAC address"),
        (["--net", "vnet", "--mac", "01:00:5e:00:00:01"], "a multicast address"),
    ],
)
def test_mac_misuse_gives_one_clear_line(argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "miragekit", "run", str(ROOT / "examples" / "echo"), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_a_default_mac_is_the_same_for_the_same_name() -> None:
    from miragekit.macaddr import MacAddr

    a, b = MacAddr.from_name("host tap tap0"), MacAddr.from_name("host tap tap0")
    assert a == b and not a.is_multicast and a.packed[0] & 2  # locally administered
    assert MacAddr.from_name("host tap tap1") != a
