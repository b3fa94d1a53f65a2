"""``miragekit exec``: unmodified programs on miragekit's stack over TAP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from tests.apprun import ROOT, AppNs, Running, app_namespace

KERNEL_IP = "10.79.0.1"
APP_IP = "10.79.0.2"
PROGRAMS = ROOT / "tests" / "programs"


def exec_cmd(ns: AppNs | None, *args: str) -> list[str]:
    prefix = ["ip", "netns", "exec", ns.name] if ns is not None else []
    return [*prefix, sys.executable, "-m", "miragekit", "exec", *args]


ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}


@contextmanager
def executing(ns: AppNs, *args: str) -> Iterator[Running]:
    proc = subprocess.Popen(
        exec_cmd(ns, *args), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    r = Running(proc)
    r._thread = threading.Thread(target=r._collect, daemon=True)
    r._thread.start()
    try:
        yield r
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        r._thread.join(5)


@pytest.fixture
def ns() -> Iterator[AppNs]:
    with app_namespace("ex", KERNEL_IP) as n:
        yield n


@pytest.mark.kernel
def test_unmodified_aiohttp_server_reached_by_curl(ns: AppNs) -> None:
    program = PROGRAMS / "hello_aiohttp.py"
    args = ["--net", f"tap:{ns.tap}", "--ip", f"{APP_IP}/24", "--", str(program), "8081"]
    with executing(ns, *args) as r:
        r.wait_for(r"Running on http://0\.0\.0\.0:8081")
        base = f"http://{APP_IP}:8081"
        assert ns.run("curl", "-sS", "--retry", "5", "--retry-connrefused", f"{base}/") == (
            f"hello {KERNEL_IP} from aiohttp\n".encode()
        )
        body = os.urandom(300_000)
        assert ns.run("curl", "-sS", "--data-binary", "@-", f"{base}/echo", input=body) == body
        # The kernel has no socket on 8081: only the stack on the TAP answered.
        assert b":8081" not in ns.run("ss", "-ltn")


@pytest.mark.kernel
def test_blocking_sockets_fail_clearly(ns: AppNs) -> None:
    p = subprocess.run(
        exec_cmd(ns, "--net", f"tap:{ns.tap}", "--", str(PROGRAMS / "blocking_client.py")),
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode != 0
    assert "NotImplementedError: socket.connect() on an IP socket" in p.stderr
    assert "blocking sockets are not supported" in p.stderr


def test_bad_invocations_are_one_line_errors() -> None:
    for args, msg in (
        (["--net", "socket", "--", "x.py"], "exec needs miragekit's own stack"),
        (["--net", "vnet"], "nothing to run"),
        (["--net", "vnet", "--", "/nonexistent.py"], "/nonexistent.py: no such file"),
        (["--net", "bogus", "--", "x.py"], "--net bogus: use one of"),
    ):
        p = subprocess.run(exec_cmd(None, *args), cwd=ROOT, env=ENV, capture_output=True, text=True)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.count("\n") == 1 and msg in p.stderr, (args, p.stderr)


def run_exec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        exec_cmd(None, *args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60
    )


def test_a_program_that_raises_value_error_gets_its_traceback_and_status_1() -> None:
    p = run_exec("--net", "vnet", "--", str(PROGRAMS / "raises_value_error.py"))
    assert p.returncode == 1, p.stderr
    assert "Traceback" in p.stderr
    assert p.stderr.rstrip().endswith("ValueError: the program's own error")


def test_a_missing_module_is_a_one_line_error() -> None:
    for mod in ("no_such_module_mk", "no_such_package_mk.main", "json.no_such_mk"):
        p = run_exec("--net", "vnet", "--", "-m", mod)
        assert p.returncode == 2, p.stderr
        assert p.stderr == f"miragekit: -m {mod}: no module named {mod!r}\n"


def test_new_event_loop_is_routed_too() -> None:
    p = run_exec("--net", "vnet", "--", str(ROOT / "examples" / "exec" / "self_echo.py"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "THROUGH THE STACK ExecLoop\n"


def test_a_program_with_its_own_loop_policy_is_told_clearly() -> None:
    p = run_exec("--net", "vnet", "--", str(PROGRAMS / "own_policy.py"))
    assert p.returncode == 1
    assert (
        "NotImplementedError: asyncio.unix_events._UnixSelectorEventLoop: this program's own "
        "event loop cannot be routed through the miragekit stack"
    ) in p.stderr


def test_a_server_on_a_socket_the_program_bound() -> None:
    p = run_exec("--net", "vnet", "--", str(PROGRAMS / "sock_server.py"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "OWN SOCKET True\n"


def test_sock_accept_on_a_socket_the_program_listens_on() -> None:
    p = run_exec("--net", "vnet", "--", str(PROGRAMS / "sock_accept_server.py"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "ACCEPTED from 10.0.0.2\n"
