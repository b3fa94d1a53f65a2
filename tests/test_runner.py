"""The runner: loading applications, linking their parameters, and misuse of options."""

from __future__ import annotations

import fcntl
import gc
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from miragekit import v1
from miragekit.cli import main
from miragekit.cli.run import YOUNG_THRESHOLD
from miragekit.runner import AppError, LinkError, Options, describe_dot, describe_text, load_app

ROOT = Path(__file__).resolve().parent.parent


def write_app(tmp_path: Path, body: str, name: str = "app") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "app.py").write_text(textwrap.dedent(body))
    return d


BLOCK_APP = """
    from pathlib import Path
    from miragekit import v1
    from miragekit.result import Ok

    async def start(block: v1.Block) -> None:
        info = await block.get_info()
        buf = bytearray(info.sector_size)
        buf[:5] = b"hello"
        assert isinstance(await block.write(3, [buf]), Ok)
        out = bytearray(info.sector_size)
        assert isinstance(await block.read(3, [out]), Ok)
        Path(__file__).with_name("result.txt").write_text(f"{info.size_sectors} {bytes(out[:5])!r}")
"""


def test_load_app_finds_start_and_annotations(tmp_path: Path) -> None:
    app = load_app(str(write_app(tmp_path, BLOCK_APP)))
    assert app.params == [("block", v1.Block)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x = 1\n", "defines no 'async def start(...)'"),
        ("def start() -> None: ...\n", "defines no 'async def start(...)'"),
        ("async def start(block) -> None: ...\n", "parameter 'block' has no type annotation"),
        ("async def start(*devs: int) -> None: ...\n", "cannot take *devs"),
    ],
)
def test_load_app_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(AppError, match=re.escape(message)):
        load_app(str(write_app(tmp_path, body)))


def test_load_app_missing(tmp_path: Path) -> None:
    with pytest.raises(AppError, match="no such file"):
        load_app(str(tmp_path / "nope.py"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AppError, match=r"needs an app\.py"):
        load_app(str(tmp_path / "empty"))
    with pytest.raises(AppError, match="no such application"):
        load_app("no_such_module_anywhere")


def test_unknown_signature_is_a_link_error(tmp_path: Path) -> None:
    app = load_app(str(write_app(tmp_path, "async def start(x: complex) -> None: ...\n")))
    with pytest.raises(LinkError, match="no backend provides complex"):
        describe_text(app, Options())


@pytest.mark.parametrize(
    ("annotation", "signature"),
    [
        ("miragekit.console.Console", "v1.Console"),
        ("miragekit.block.FileBlock", "v1.Block"),
        ("miragekit.stack.SocketStackV4", "v1.StackV4"),
    ],
)
def test_an_implementation_as_annotation_gets_a_hint(
    tmp_path: Path, annotation: str, signature: str
) -> None:
    module, _, cls = annotation.rpartition(".")
    body = f"import {module}\nasync def start(dev: {annotation}) -> None: ...\n"
    app = load_app(str(write_app(tmp_path, body)))
    with pytest.raises(
        LinkError,
        match=f"{cls} is an implementation: annotate the parameter "
        f"with its signature, {re.escape(signature)}",
    ):
        describe_text(app, Options())


SETTINGS_APP = """
    from pathlib import Path
    from miragekit import v1

    async def start(
        console: v1.Console, greeting: str = "hi", times: int = 2, loud: bool = False,
        ratio: float = 0.5, out: Path = Path("x"),
    ) -> None:
        text = greeting.upper() if loud else greeting
        for _ in range(times):
            await console.log_s(text)
        await console.log_s(f"{ratio!r} {type(out).__name__} {out}")
"""


def run_cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "miragekit", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=60,
        check=False,
    )


def test_settings_come_from_set_or_the_defaults(tmp_path: Path) -> None:
    d = str(write_app(tmp_path, SETTINGS_APP))
    p = run_cli("run", d)
    assert p.returncode == 0, p.stderr
    assert p.stdout.replace("\r\n", "\n") == "hi\nhi\n0.5 PosixPath x\n"
    p = run_cli(
        "run",
        d,
        "--set",
        "times=3",
        "--set",
        "greeting=yo=yo",
        "--set",
        "loud=yes",
        "--set",
        "ratio=2.5",
        "--set",
        "out=/tmp/o",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.replace("\r\n", "\n") == "YO=YO\nYO=YO\nYO=YO\n2.5 PosixPath /tmp/o\n"
    described = run_cli("describe", d, "--set", "times=3").stdout
    assert "setting times = 3" in described and "setting greeting = 'hi'" in described
    assert "console" in load_app(d).params[0][0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "nope=1"], "--set nope=1: start() has no setting 'nope' (settings: greeting"),
        (["--set", "times=x"], "--set times=x: not an int"),
        (["--set", "loud=maybe"], "--set loud=maybe: not a boolean"),
        (["--set", "times"], "--set times: use NAME=VALUE"),
    ],
)
def test_settings_misuse(tmp_path: Path, argv: list[str], message: str) -> None:
    p = run_cli("run", str(write_app(tmp_path, SETTINGS_APP)), *argv)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == f"miragekit: {message}" + p.stderr.removeprefix(f"miragekit: {message}")
    assert len(p.stderr.splitlines()) == 1, p.stderr


def test_a_setting_without_default_must_be_set(tmp_path: Path) -> None:
    d = str(write_app(tmp_path, "async def start(port: int) -> None:\n    print(port)\n"))
    p = run_cli("run", d)
    assert p.returncode == 2
    assert p.stderr == (
        "miragekit: start() parameter 'port' (int) is a setting with no default: "
        "give --set port=VALUE\n"
    )
    p = run_cli("run", d, "--set", "port=8080")
    assert (p.returncode, p.stdout) == (0, "8080\n")


def test_the_runner_provides_a_channel_over_the_console(tmp_path: Path) -> None:
    body = """
        from miragekit import v1

        async def start(chan: v1.Channel) -> None:
            while True:
                ok, line = await chan.read_until(b"\\n")
                if not ok:
                    break
                chan.write_line(bytes(line).upper())
                await chan.flush()
    """
    d = str(write_app(tmp_path, body))
    p = run_cli("run", d, stdin="hello\nchannel\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout.replace("\r\n", "\n") == "HELLO\nCHANNEL\n"
    assert "CHANNEL: miragekit.channel.Channel (over the CONSOLE)" in run_cli("describe", d).stdout


def test_run_links_a_memory_block(tmp_path: Path) -> None:
    d = write_app(tmp_path, BLOCK_APP)
    assert main(["run", str(d), "--block-size", "1M"]) == 0
    assert (d / "result.txt").read_text() == "2048 b'hello'"


def test_run_links_a_file_block(tmp_path: Path) -> None:
    d = write_app(tmp_path, BLOCK_APP)
    img = tmp_path / "disk.img"
    assert main(["run", str(d), "--block", str(img), "--block-size", "64K"]) == 0
    assert (d / "result.txt").read_text() == "128 b'hello'"
    data = img.read_bytes()
    assert len(data) == 64 * 1024 and data[3 * 512 : 3 * 512 + 5] == b"hello"


def test_run_freezes_what_start_up_left_alive_and_unfreezes_after(tmp_path: Path) -> None:
    """The runner moves start-up's objects out of the collector's reach while the app
    runs (full collections no longer walk them) and makes young collections rarer; it
    gives both back when the app returns."""
    body = """
        import gc
        from pathlib import Path
        from miragekit import v1

        async def start(block: v1.Block) -> None:
            left = []
            left.append(left)  # a cycle made by the app: the collector still frees it
            del left
            frozen = gc.get_freeze_count()
            freed = gc.collect()
            young = gc.get_threshold()[0]
            Path(__file__).with_name("result.txt").write_text(f"{frozen} {freed} {young}")
    """
    d = write_app(tmp_path, body)
    assert gc.get_freeze_count() == 0
    before = gc.get_threshold()
    assert before[0] != YOUNG_THRESHOLD
    assert main(["run", str(d), "--block-size", "64K"]) == 0
    frozen, freed, young = map(int, (d / "result.txt").read_text().split())
    assert frozen > 1000 and freed >= 1, (frozen, freed)
    # Young collections are rarer while the app runs, as before after it.
    assert young == YOUNG_THRESHOLD
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_a_second_run_on_one_block_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = write_app(tmp_path, BLOCK_APP)
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(64 << 10))
    with img.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the first run, writing
        assert main(["run", str(d), "--block", str(img)]) != 0
    err = capsys.readouterr().err
    assert f"--block {img}: '{img}' is in use: another program is using it" in err, err
    assert "Unknown(" not in err and not (d / "result.txt").exists()


def test_describe_text_and_dot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = write_app(tmp_path, BLOCK_APP)
    assert main(["describe", str(d)]) == 0
    out = capsys.readouterr().out
    assert "BLOCK: miragekit.block.MemoryBlock" in out and "used by start(block)" in out
    app = load_app(str(d))
    dot = describe_dot(app, Options(block=tmp_path / "x.img"))
    assert dot.startswith("digraph miragekit {") and 'app -> "BLOCK" [label="block"]' in dot
    assert "FileBlock" in dot


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "{app}", "--kv", "{tmp}/missing"], "--kv {tmp}/missing: no such directory"),
        (["run", "{app}", "--kv", "{app}/app.py"], "neither a directory, a tar archive nor a FAT"),
        (["run", "{app}", "--read-only"], "--read-only needs --block FILE"),
        (["run", "{app}", "--block", "{tmp}"], "is a directory"),
        (["run", "{app}", "--block-size", "12Q"], "not a size: '12Q'"),
        (["run", "{app}", "--block-size", "100"], "must be a positive multiple of 512"),
        (["run", "{tmp}/nope"], "{tmp}/nope: no such application"),
        (["describe", "{tmp}/nope.py"], "{tmp}/nope.py: no such file"),
        (["run", "{app}", "--net", "bogus"], "--net bogus: use one of socket, vnet, tap"),
        (["run", "{app}", "--net", "vnet:x"], "--net vnet:x: use one of"),
        (["run", "{app}", "--net", "tap:"], "the TAP device's name is missing"),
        (["run", "{app}", "--net", "tap:" + "x" * 16], "not an interface name"),
        (["run", "{app}", "--ip", "300.1.1.1"], "--ip 300.1.1.1: not an IPv4 address"),
        (["run", "{app}", "--net", "vnet", "--ip", "10.0.0.0/24"], "network's or broadcast"),
        (["run", "{app}", "--gateway", "10.0.0.1"], "--gateway is for the direct stack"),
        (["run", "{app}", "--net", "vnet", "--gateway", "x"], "--gateway x: not an IPv4"),
        (["run", "{app}", "--net", "vnet", "--gateway", "10.9.0.1"], "not in the stack's network"),
        (["run", "{app}", "--forward", "8080"], "--forward 8080: use [tcp:|udp:]HOSTPORT:PORT"),
        (["run", "{app}", "--forward", "a:b"], "--forward a:b: use [tcp:|udp:]HOSTPORT:PORT"),
        (["run", "{app}", "--forward", "udp:53"], "--forward udp:53: use [tcp:|udp:]HOST"),
        (["run", "{app}", "--forward", "sctp:1:2"], "--forward sctp:1:2: use [tcp:|udp:]"),
        (["run", "{app}", "--net", "vnet", "--forward", "1:0"], "ports are 1 to 65535"),
        (["run", "{app}", "--forward", "8080:80"], "--forward is for the direct stack"),
        (["run", "{app}", "--net", "vnet", "--forward", "1:2", "--forward", "1:3"], "given twice"),
        (["run", "{app}", "--net", "vnet", "--sim", "--forward", "0:7"], "cannot run with --sim"),
        (["run", "{app}", "--net", "vnet", "--ip", "10.0.0.2/32", "--forward", "0:7"], "no room"),
        (["run", "{app}", "--net", "vnet", "--forward", "0:7"], "takes no STACKV4"),
        (["run", "{app}", "--pcap", "{tmp}/x.pcap"], "--pcap records the frames of the direct"),
        (["run", "{app}", "--net", "vnet", "--pcap", "{tmp}"], "is a directory"),
        (["run", "{app}", "--net", "vnet", "--pcap", "{tmp}/no/x.pcap"], "no such directory"),
        (["run", "{app}", "--net", "tap", "--sim"], "--sim cannot drive a TAP device"),
        (["run", "{app}", "--net", "vnet", "--offload"], "--offload is TAP checksum and"),
        (["run", "{app}", "--offload"], "it needs --net tap[:NAME]"),
        (["run", "{app}", "--net", "tap", "--offload", "--pcap", "{tmp}/x"], "plain frames only"),
        (["run", "{echo}", "--sim"], "--sim with a STACKV4 needs --net vnet"),
        (["run", "{app}", "--clock-start", "0"], "--clock-start sets the simulated clock"),
        (["run", "{app}", "--sim", "--clock-start", "May"], "use seconds since 1970 or a date"),
        (["describe", "{hello}", "--net", "vnet", "--forward", "0:7"], "takes no STACKV4"),
        (["run", "{kv}"], "a KV_RO store is needed: give --kv"),
    ],
)
def test_misuse_gives_one_clear_line(tmp_path: Path, argv: list[str], message: str) -> None:
    d = write_app(tmp_path, BLOCK_APP)
    examples = ROOT / "examples"
    argv = [
        a.format(
            app=d,
            tmp=tmp_path,
            echo=examples / "echo",
            hello=examples / "hello",
            kv=examples / "kv_ro",
        )
        for a in argv
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "miragekit", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == "miragekit: " + lines[0].removeprefix("miragekit: ")
    assert message.format(tmp=tmp_path) in lines[0]


def test_sigterm_stops_the_app_cleanly(tmp_path: Path) -> None:
    d = write_app(
        tmp_path,
        """
        import asyncio
        from pathlib import Path
        from miragekit import v1

        async def start(block: v1.Block) -> None:
            Path(__file__).with_name("started").touch()
            try:
                await asyncio.sleep(3600)
            finally:
                Path(__file__).with_name("stopped").touch()
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "miragekit", "run", str(d)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        deadline = time.monotonic() + 20
        while not (d / "started").exists():
            assert time.monotonic() < deadline, "app did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert (d / "stopped").exists()
    finally:
        proc.kill()


def test_describe_shows_the_network_pcap_stack_and_forwards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = str(ROOT / "examples" / "echo")
    pcap = tmp_path / "cap.pcap"
    argv = ["describe", echo, "--net", "vnet", "--pcap", str(pcap), "--forward", "8007:7"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"NETWORK: miragekit.link.PcapNetif ({pcap}) over miragekit.link.VnetIf" in out
    assert "STACKV4: miragekit.stack.DirectStackV4 (10.0.0.2/24)" in out
    assert "needs NETWORK" in out and "used by start(stack), --forward" in out
    assert "forward 127.0.0.1:8007 -> 10.0.0.2:7 through the host's DirectStackV4 10.0.0.1" in out
    assert not pcap.exists()  # describe builds nothing
    argv = ["describe", echo, "--net", "tap:mk-x", "--ip", "10.5.0.9/16", "--gateway", "10.5.0.1"]
    assert main([*argv, "--dot", "--forward", "9000:7"]) == 0
    dot = capsys.readouterr().out
    assert '"STACKV4" -> "NETWORK";' in dot and "TapNetif (mk-x)" in dot
    assert "DirectStackV4 (10.5.0.9/16, gateway 10.5.0.1)" in dot
    assert "127.0.0.1:9000 -> 10.5.0.9:7 through the host kernel and mk-x" in dot
    assert main(["describe", echo]) == 0
    assert "SocketStackV4 (host sockets on 127.0.0.1)" in capsys.readouterr().out
    assert main(["describe", echo, "--net", "tap:mk-y", "--offload"]) == 0
    assert "NETWORK: miragekit.link.TapNetif (mk-y, offload)" in capsys.readouterr().out


SIM_APP = """
    import time as wall
    from pathlib import Path
    from miragekit import v1

    async def start(stack: v1.StackV4, time: v1.Time, clock: v1.Clock) -> None:
        t0 = wall.monotonic()
        await time.sleep(3600.0)
        ips = [str(ip) for ip in stack.ipv4().get_ip()]
        Path(__file__).with_name("result.txt").write_text(f"{ips} {wall.monotonic() - t0:.3f}")
"""


def test_sim_runs_the_direct_stack_in_simulated_time(tmp_path: Path) -> None:
    d = write_app(tmp_path, SIM_APP)
    pcap = tmp_path / "sim.pcap"
    argv = ["run", str(d), "--net", "vnet", "--sim", "--seed", "3", "--ip", "10.1.2.3/24"]
    assert main([*argv, "--pcap", str(pcap)]) == 0
    ips, took = (d / "result.txt").read_text().split(" ")
    assert ips == "['10.1.2.3']"
    assert float(took) < 5.0  # an hour of simulated time
    data = pcap.read_bytes()  # the capture was flushed and closed: a pcap header at least
    assert len(data) >= 24 and data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")


CLOCK_APP = """
    from miragekit import v1

    async def start(console: v1.Console, time: v1.Time, clock: v1.Clock) -> None:
        t0 = clock.time()
        await time.sleep(3600.0)
        t1 = clock.time()
        tm = clock.gmtime(t1)
        stamp = f"{tm.tm_year + 1900}-{tm.tm_mon + 1:02}-{tm.tm_mday:02} {tm.tm_hour:02}"
        await console.log_s(f"start {t0:.3f} advanced {t1 - t0:.3f} now {stamp}")
"""


def run_clock_app(d: Path, *extra: str) -> str:
    proc = run_cli("run", str(d), "--sim", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_kv_over_a_fat_image(tmp_path: Path) -> None:
    """--kv takes a FAT image (made by mkfs.fat and mcopy): FatKV serves it read-only."""
    img, secret = tmp_path / "kv.img", tmp_path / "secret"
    secret.write_bytes(b"mirage kv_ro secret\n")
    subprocess.run(["mkfs.fat", "-C", str(img), "2048"], check=True, capture_output=True)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mcopy", "-i", str(img), str(secret), "::secret"], check=True, env=env)
    before = img.read_bytes()
    proc = run_cli("run", str(ROOT / "examples/kv_ro"), "--kv", str(img))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.replace("\r\n", "\n")
    assert "1 key(s)\nsecret (20 bytes)\n  mirage kv_ro secret\n" in out, out
    assert img.read_bytes() == before


def test_sim_clock_is_virtual_and_reproducible(tmp_path: Path) -> None:
    """With --sim, CLOCK follows TIME from a fixed epoch: an hour's sleep moves it an hour
    and two runs print the same thing."""
    d = write_app(tmp_path, CLOCK_APP)
    first = run_clock_app(d, "--seed", "5")
    assert "start 946684800.000 advanced 3600.000 now 2000-01-01 01" in first, first
    assert run_clock_app(d, "--seed", "5") == first
    later = run_clock_app(d, "--clock-start", "2024-05-01T12:00:00Z")
    assert "start 1714564800.000 advanced 3600.000 now 2024-05-01 13" in later, later
    assert "now 1970-01-01 01" in run_clock_app(d, "--clock-start", "0")


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["examples/hello", "--net", "vnet", "--sim"], "hello\nhello\nhello\nhello\n"),
        (
            ["examples/kv_ro", "--net", "vnet", "--kv", "examples/static_website/site"],
            "index.html (899 bytes)",
        ),
    ],
)
def test_examples_without_a_stack_run_whatever_the_net(argv: list[str], expect: str) -> None:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "miragekit", "run", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout.replace("\r\n", "\n")
    assert time.monotonic() - start < 30  # --sim: three seconds of sleeping cost nothing


def test_vnet_without_forward_says_how_to_reach_the_app() -> None:
    from tests.apprun import running

    with running("examples/echo", "--net", "vnet", ready="echo: TCP") as r:
        r.wait_for(r"^miragekit: the stack is alone on a virtual switch; add --forward")


def test_forward_to_a_host_port_in_use_is_one_clear_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "miragekit", "run", "examples/echo", "--net", "vnet",
             "--forward", f"{port}:7"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miragekit: examples/echo: "), proc.stderr
    assert "address already in use" in lines[0]
