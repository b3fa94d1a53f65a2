"""CONSOLE over real descriptors: pipes, a pty, regular files, /dev/null, a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from miragekit import v1
from miragekit.console import Console
from miragekit.result import EOF, Error, InvalidConsole, Ok
from miragekit.testing import FLOW_CHECKS, check_flow

ROOT = Path(__file__).resolve().parent.parent


def test_conforms() -> None:
    c: type[v1.Console] = Console
    assert c is Console


class Pipes:
    """A console whose input and output are pipes the test holds the other ends of."""

    def __init__(self) -> None:
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.fds = [self.in_r, self.in_w, self.out_r, self.out_w]

    async def console(self, **kw: bool) -> Console:
        match await Console.connect("console", stdin_fd=self.in_r, stdout_fd=self.out_w, **kw):
            case Ok(c):
                return c
            case other:
                raise AssertionError(other)

    def output(self, n: int = 65536) -> bytes:
        return os.read(self.out_r, n)

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    p = Pipes()
    try:
        yield p
    finally:
        p.close()


def test_read_write_log_close_over_pipes(pipes: Pipes) -> None:
    async def main() -> None:
        c = await pipes.console(close_fds=True)
        assert c.id() == "console"
        os.write(pipes.in_w, b"abc")
        r = await c.read()
        assert isinstance(r, Ok) and bytes(r.value) == b"abc"
        os.close(pipes.in_w)
        assert await c.read() is EOF
        assert await c.write(b"hello ") == Ok(None)
        assert await c.writev([b"a", bytearray(b"b"), memoryview(b"c")]) == Ok(None)
        c.log("line")
        await c.log_s("async line")
        assert pipes.output() == b"hello abcline\r\nasync line\r\n"
        await c.close()
        assert await c.read() is EOF
        assert await c.write(b"late") is EOF
        c.log("ignored")  # no exception, nothing written
        await c.close()  # idempotent

    asyncio.run(main())
    assert pipes.output() == b""  # close_fds: the reader sees the end


def test_read_waits_for_data_without_blocking_the_loop(pipes: Pipes) -> None:
    async def main() -> None:
        c = await pipes.console()
        loop = asyncio.get_running_loop()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        t = asyncio.create_task(ticker())
        loop.call_later(0.1, os.write, pipes.in_w, b"late data")
        r = await c.read()
        t.cancel()
        assert isinstance(r, Ok) and bytes(r.value) == b"late data"
        assert ticks >= 5
        await c.close()

    asyncio.run(main())


def test_close_wakes_a_pending_read(pipes: Pipes) -> None:
    async def main() -> None:
        c = await pipes.console()
        reader = asyncio.create_task(c.read())
        await asyncio.sleep(0.02)
        assert not reader.done()
        await c.close()
        assert await asyncio.wait_for(reader, 1) is EOF

    asyncio.run(main())


def test_large_write_through_a_full_pipe(pipes: Pipes) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB, far more than a pipe holds

    async def main() -> bytes:
        c = await pipes.console()
        loop = asyncio.get_running_loop()
        received = bytearray()

        def drain() -> None:
            while len(received) < len(payload):
                received.extend(os.read(pipes.out_r, 65536))

        drainer = loop.run_in_executor(None, drain)
        assert await c.write(payload) == Ok(None)
        await drainer
        await c.close()
        return bytes(received)

    assert asyncio.run(main()) == payload


def test_descriptors_keep_their_flags(pipes: Pipes) -> None:
    async def main() -> None:
        c = await pipes.console()
        os.write(pipes.in_w, b"x")
        await c.read()
        await c.write(b"y")
        await c.close()

    asyncio.run(main())
    assert os.get_blocking(pipes.in_r) and os.get_blocking(pipes.out_w)
    # Not closed without close_fds: the descriptors still work.
    os.write(pipes.in_w, b"still")
    assert os.read(pipes.in_r, 10) == b"still"
    assert pipes.output() == b"y"


def test_write_to_a_gone_reader_is_eof(pipes: Pipes) -> None:
    async def main() -> None:
        c = await pipes.console()
        os.close(pipes.out_r)
        assert await c.write(b"nobody") is EOF
        c.log("nobody either")  # never raises
        await c.log_s("nor this")
        await c.close()

    asyncio.run(main())


def test_regular_files(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"from a file\n")
    dst = tmp_path / "out.txt"
    in_fd = os.open(src, os.O_RDONLY)
    out_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(out_fd, b"before:")

        async def main() -> None:
            match await Console.connect("f", stdin_fd=in_fd, stdout_fd=out_fd):
                case Ok(c):
                    pass
                case other:
                    raise AssertionError(other)
            r = await c.read()
            assert isinstance(r, Ok) and bytes(r.value) == b"from a file\n"
            assert await c.read() is EOF
            await c.write(b"written")
            c.log("!")
            await c.close()

        asyncio.run(main())
        os.write(out_fd, b":after")  # the shared offset moved on
    finally:
        os.close(in_fd)
        os.close(out_fd)
    assert dst.read_bytes() == b"before:written!\r\n:after"


def test_dev_null_input_and_no_input(pipes: Pipes) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    try:

        async def main() -> None:
            r = await Console.connect("n", stdin_fd=null, stdout_fd=pipes.out_w)
            assert isinstance(r, Ok)
            assert await r.value.read() is EOF
            await r.value.close()
            r2 = await Console.connect("none", stdin_fd=None, stdout_fd=pipes.out_w)
            assert isinstance(r2, Ok)
            assert await r2.value.read() is EOF
            await r2.value.log_s("out")
            await r2.value.close()

        asyncio.run(main())
    finally:
        os.close(null)
    assert pipes.output() == b"out\r\n"


def test_pty_terminal_is_not_broken() -> None:
    master, slave = pty.openpty()
    try:

        async def main() -> None:
            match await Console.connect("tty", stdin_fd=slave, stdout_fd=slave):
                case Ok(c):
                    pass
                case other:
                    raise AssertionError(other)
            os.write(master, b"typed\n")
            r = await asyncio.wait_for(c.read(), 2)
            assert isinstance(r, Ok) and bytes(r.value) == b"typed\n"
            await c.write(b"shown")
            await c.close()

        asyncio.run(main())
        out = b""
        while b"shown" not in out:
            out += os.read(master, 1024)
        assert os.get_blocking(slave)
        assert os.isatty(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_connect_errors_are_values(tmp_path: Path) -> None:
    f = tmp_path / "ro"
    f.write_bytes(b"")
    ro = os.open(f, os.O_RDONLY)
    wo = os.open(f, os.O_WRONLY)
    r = w = 1021  # far above what this test opens (the event loop opens a few)
    with pytest.raises(OSError):
        os.fstat(r)
    try:

        async def main() -> None:
            for fd_in, fd_out in (
                (r, wo),  # closed input
                (ro, w),  # closed output
                (ro, ro),  # output not writable
                (wo, wo),  # input not readable
            ):
                res = await Console.connect("bad", stdin_fd=fd_in, stdout_fd=fd_out)
                assert isinstance(res, Error), (fd_in, fd_out)
                assert isinstance(res.error, InvalidConsole)
                assert "bad" in res.error.msg

        asyncio.run(main())
    finally:
        os.close(ro)
        os.close(wo)


SCRIPT = textwrap.dedent(
    """
    import asyncio
    from miragekit.console import Console
    from miragekit.result import Ok

    async def main():
        match await Console.connect("console"):
            case Ok(c):
                pass
        c.log("ready")
        while True:
            r = await c.read()
            if not isinstance(r, Ok):
                break
            await c.write(bytes(r.value).upper())
        await c.log_s("done")
        await c.close()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("stdin", ["pipe", "devnull"])
def test_real_stdin_stdout_in_a_subprocess(stdin: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input=b"abc\ndef\n" if stdin == "pipe" else None,
        stdin=subprocess.DEVNULL if stdin == "devnull" else None,
        capture_output=True,
        env=env,
        timeout=30,
        check=True,
    )
    assert proc.stderr == b""
    body = b"ABC\nDEF\n" if stdin == "pipe" else b""
    assert proc.stdout == b"ready\r\n" + body + b"done\r\n"


def test_socket_descriptors_get_their_flag_back() -> None:
    """A socket cannot be reopened: the fallback shares its flag and restores it."""
    import socket

    a, b = socket.socketpair()
    try:
        fd = a.fileno()

        async def main() -> None:
            match await Console.connect("sock", stdin_fd=fd, stdout_fd=fd):
                case Ok(c):
                    pass
                case other:
                    raise AssertionError(other)
            b.sendall(b"ping")
            r = await asyncio.wait_for(c.read(), 2)
            assert isinstance(r, Ok) and bytes(r.value) == b"ping"
            assert await c.write(b"pong") == Ok(None)
            await c.close()

        assert os.get_blocking(fd)
        asyncio.run(main())
        assert os.get_blocking(fd)
        assert b.recv(10) == b"pong"
        a.sendall(b"still open")
        assert b.recv(20) == b"still open"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("check", FLOW_CHECKS)
def test_flow_conformance_over_two_pipes(check: str) -> None:
    """Two consoles joined by two pipes are a FLOW pair: the suite runs on them (close
    wakes a write stalled on a full pipe, as on every flow)."""

    async def make() -> tuple[Console, Console]:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        a = (await Console.connect("a", stdin_fd=r1, stdout_fd=w2, close_fds=True)).unwrap()
        b = (await Console.connect("b", stdin_fd=r2, stdout_fd=w1, close_fds=True)).unwrap()
        return a, b

    asyncio.run(check_flow(make, only=[check], timeout=30))
