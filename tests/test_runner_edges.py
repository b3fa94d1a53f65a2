"""The runner at the edges of a run: seeds, flags an app does not use, usage, messages."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from tests.apprun import loopback_ip
from tests.test_runner_dhcp_vxlan import app, miragekit

ENTROPY_APP = """
import asyncio

from miragekit import v1

async def start(console: v1.Console, entropy: v1.Entropy, random: v1.Random) -> None:
    got: list[bytes] = []

    def take(source: int, buf: memoryview) -> None:
        got.append(bytes(buf))

    await entropy.handler(take)
    for _ in range(200):
        if got:
            break
        await asyncio.sleep(0.01)
    await console.log_s("entropy " + got[0][:16].hex())
    await console.log_s("random " + str([random.int(1 << 29) for _ in range(4)]))
"""


def write_app(tmp_path: Path, name: str, text: str) -> str:
    d = tmp_path / name
    d.mkdir()
    (d / "app.py").write_text(textwrap.dedent(text))
    return str(d)


def seeded(app: str, *seed: str) -> str:
    p = miragekit("run", app, *(("--seed", *seed) if seed else ()))
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_seed_seeds_entropy_and_random(tmp_path: Path) -> None:
    app = write_app(tmp_path, "ent", ENTROPY_APP)
    a, a_again, b = seeded(app, "7"), seeded(app, "7"), seeded(app, "8")
    assert a == a_again
    ent = [line for line in (a + b).splitlines() if line.startswith("entropy ")]
    rnd = [line for line in (a + b).splitlines() if line.startswith("random ")]
    assert len(ent) == 2 and ent[0] != ent[1], ent
    assert len(rnd) == 2 and rnd[0] != rnd[1], rnd
    # Without a seed, the operating system's entropy: not the seeded bytes.
    assert seeded(app) not in (a, b)


def test_a_negative_seed_is_refused(tmp_path: Path) -> None:
    p = miragekit("run", "examples/hello", "--seed", "-1")
    assert p.returncode == 2
    assert p.stderr.strip() == "miragekit: --seed -1: must be 0 or more"


def test_vxlan_chat_runs_as_documented() -> None:
    """The app takes NETWORK, not STACKV4: no --ip needed (it picks its own address)."""
    a, b = loopback_ip(), loopback_ip()
    spec = f"vxlan:42@{a}:4789,{b}"
    d = miragekit("describe", "examples/vxlan_chat", "--net", spec)
    assert d.returncode == 0, d.stderr
    assert f"NETWORK: miragekit.link.VxlanNetif ({spec})" in d.stdout
    p = miragekit("run", "examples/vxlan_chat", "--net", spec, timeout=30)
    assert p.returncode == 0, p.stderr
    assert " joined" in p.stdout


def test_run_with_an_unknown_flag_prints_runs_usage() -> None:
    p = miragekit("run", "examples/hello", "--bogus")
    assert p.returncode == 2
    assert p.stderr.startswith("usage: miragekit run "), p.stderr
    assert "unrecognized arguments: --bogus" in p.stderr


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--kv", "examples/static_website/site"], ["--kv"]),
        (["--block", "x.img"], ["--block"]),
        (["--net", "vnet"], ["--net"]),
        (["--pcap", "x.pcap", "--net", "vnet"], ["--net", "--pcap"]),
    ],
)
def test_flags_the_app_does_not_use_are_named(argv: list[str], flags: list[str]) -> None:
    for command in ("run", "describe"):
        p = miragekit(command, "examples/hello", *argv)
        assert p.returncode == 0, p.stderr
        want = [f"miragekit: warning: {f}: examples/hello takes no " for f in flags]
        lines = p.stderr.strip().splitlines()
        assert len(lines) == len(want), p.stderr
        assert all(line.startswith(w) for line, w in zip(lines, want, strict=True)), lines
    assert not Path("x.img").exists() and not Path("x.pcap").exists()


def test_a_direct_stack_address_needs_its_prefix() -> None:
    p = miragekit("run", "examples/echo", "--net", "vnet", "--ip", "10.0.0.2")
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "miragekit: --ip 10.0.0.2: give the prefix length (e.g. 10.0.0.2/24); without one "
        "the stack would have no neighbours to reach"
    )


def test_the_runner_says_which_addresses_the_stack_got(tmp_path: Path) -> None:
    show = app(tmp_path)
    p = miragekit("run", show, "--net", "vnet", "--sim", "--ip6", "fd00::5/64")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert "miragekit: the stack is up: IPv4 10.0.0.2/24 (static)" in lines
    (v6,) = [line for line in lines if line.startswith("miragekit: IPv6 ")]
    assert v6.startswith("miragekit: IPv6 fe80::") and v6.endswith(
        " (link-local), fd00::5 (static)"
    )
    p = miragekit("run", show, "--net", "vnet", "--sim", "--dhcp")
    assert p.returncode == 0, p.stderr
    assert (
        "miragekit: the stack is up: IPv4 10.0.0.100/24 (DHCP lease from 10.0.0.1, 3600 s, "
        "gateway 10.0.0.1)"
    ) in p.stderr.splitlines()


def test_dhcp_on_the_virtual_switch_does_not_suggest_forward_alone(tmp_path: Path) -> None:
    from tests.apprun import running

    with running("examples/echo", "--net", "vnet", "--dhcp") as r:
        m = r.wait_for("the stack is alone on a virtual switch")
        assert "run with --ip instead of --dhcp and add --forward" in m.string


def test_an_app_needing_the_http_extra_names_it() -> None:
    """As after ``pip install miragekit`` without ``[http]``: h11 cannot be imported."""
    import subprocess
    import sys

    from tests.apprun import ROOT

    code = (
        "import sys; sys.modules['h11'] = None\n"
        "from miragekit.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    for cmd in ("run", "describe"):
        p = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                cmd,
                "examples/static_website",
                "--kv",
                "examples/static_website/site",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip() == (
            "miragekit: examples/static_website needs the 'h11' module, from miragekit's "
            "[http] extra: pip install 'miragekit[http]'"
        ), p.stderr


def test_device_errors_read_as_sentences() -> None:
    """A VXLAN socket that cannot bind: the message, not ``Unknown(msg=...)``."""
    p = miragekit("run", "examples/vxlan_chat", "--net", "vxlan:42@192.0.2.1:4789,192.0.2.2")
    assert p.returncode == 2, p.stderr
    assert "Cannot assign requested address" in p.stderr
    assert "Unknown(" not in p.stderr and "msg=" not in p.stderr


@pytest.mark.kernel
def test_a_tap_held_by_another_process_is_named_busy() -> None:
    from tests.apprun import app_namespace, running

    with app_namespace("busy", "10.81.0.1") as ns:
        args = (f"--net=tap:{ns.tap}", "--ip", "10.81.0.2/24")
        with running("examples/echo", *args, netns=ns.name, ready="echo: TCP"):
            p = miragekit("run", "examples/echo", *args, netns=ns.name)
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip() == (
            f"miragekit: --net tap:{ns.tap}: TUNSETIFF '{ns.tap}': Device or resource busy "
            f"(another process has {ns.tap} open: stop it, or use another device)"
        )


def test_a_refused_forward_reaches_curl_as_a_reset_and_is_logged_once() -> None:
    import subprocess

    from tests.apprun import running

    with running("examples/echo", "--net", "vnet", "--forward", "0:81") as r:
        (port,) = r.forwarded()
        p = subprocess.run(
            ["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert p.returncode in (7, 56), p.stderr  # a reset, not 52 "Empty reply"
        m = r.wait_for("--forward to port 81 ")
        assert m.string == (
            "miragekit: --forward to port 81 through the host's stack 10.0.0.1 on the switch: "
            "10.0.0.2:81: connection refused; the client's connection was reset"
        )
        assert r.count("--forward to port 81 ") == 1
    assert r.count(r"forwarded 1 connection \(0 completed, 0 aborted, 1 failed\)") == 1


@pytest.mark.kernel
def test_the_runner_prints_a_slaac_address_when_it_comes() -> None:
    import sys

    from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptPrefixInfo
    from tests.apprun import app_namespace, running
    from tests.ipstack.test_ipv6_kernel import SEND_RA

    ra = ICMPv6ND_RA(routerlifetime=1800) / ICMPv6NDOptPrefixInfo(
        prefix="fd00:98::", prefixlen=64, L=1, A=1, validlifetime=86400, preferredlifetime=14400
    )
    with app_namespace("sl", "10.82.0.1", "fd00:98::1") as ns:
        args = (f"--net=tap:{ns.tap}", "--ip", "10.82.0.2/24", "--ip6", "slaac")
        with running("examples/echo", *args, netns=ns.name, ready="echo: TCP") as r:
            r.wait_for(r"^miragekit: IPv6 fe80::\S+ \(link-local\)$")
            assert r.count(r"\(SLAAC\)") == 0
            ns.run(sys.executable, "-c", SEND_RA, ns.tap, bytes(ra).hex())
            r.wait_for(r"^miragekit: IPv6 fd00:98::\S+ \(SLAAC\)$", timeout=10)


@pytest.mark.kernel
def test_forward_failures_over_a_tap_reach_curl_as_resets() -> None:
    """Through the host kernel: nothing listening, then the TAP without an address."""
    from tests.apprun import app_namespace, running
    from tests.netns import sh as ip_sh

    with app_namespace("fw", "10.83.0.1") as ns:
        args = (f"--net=tap:{ns.tap}", "--ip", "10.83.0.2/24", "--forward", "0:81")
        with running("examples/echo", *args, netns=ns.name, ready="forwarding") as r:
            (port,) = r.forwarded()
            curl = ("ip", "netns", "exec", ns.name, "curl", "-sS", "--max-time", "15")
            p = subprocess.run([*curl, f"http://127.0.0.1:{port}/"], capture_output=True)
            # A reset, not curl's 52 "Empty reply": 56 once curl is reading, or 7 when the
            # RST overtakes its connect() on loopback.
            assert p.returncode in (7, 56), (p.stderr, r.lines)
            r.wait_for(r"--forward to port 81 through the host kernel .*: Connection refused; ")
            ip_sh("ip", "-n", ns.name, "addr", "flush", "dev", ns.tap)
            p = subprocess.run([*curl, f"http://127.0.0.1:{port}/"], capture_output=True)
            assert p.returncode in (7, 56), p.stderr
            r.wait_for(r"--forward to port 81 through the host kernel .*: Network is unreachable")
            assert r.count("--forward to port 81 ") == 2


def test_an_app_that_raises_system_exit_exits_with_its_code_and_no_traceback(
    tmp_path: Path,
) -> None:
    import sys

    app = tmp_path / "bye.py"
    for code, rc, err in (("3", 3, ""), ("'no zone file'", 1, "no zone file\n"), ("None", 0, "")):
        app.write_text(
            "from miragekit import v1\n\n\nasync def start(console: v1.Console) -> None:\n"
            f"    raise SystemExit({code})\n"
        )
        p = subprocess.run([sys.executable, "-m", "miragekit", "run", str(app)],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert (p.returncode, p.stderr) == (rc, err)
