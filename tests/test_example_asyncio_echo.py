"""examples/asyncio_echo: the same asyncio handler on asyncio's own server and on the stacks."""

from __future__ import annotations

import asyncio

import pytest
from examples.asyncio_echo import app
from tests.apprun import loopback_ip, running, sh

LINES = b"alpha\nbeta gamma\n"
EXPECTED_AFTER_GREETING = b"1: ALPHA\n2: BETA GAMMA\n"


def test_the_handler_is_plain_asyncio() -> None:
    """The reference: the handler under asyncio.start_server on the host."""

    async def main() -> bytes:
        server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(LINES + b"quit\nignored\n")
            out = await r.read()
            w.close()
            return out

    out = asyncio.run(main())
    assert (
        out == b"hello 127.0.0.1, send lines; 'quit' to end\n" + EXPECTED_AFTER_GREETING + b"bye\n"
    )


@pytest.mark.parametrize("backend", ["socket", "vnet"])
def test_asyncio_echo_on_each_stack_with_socat(backend: str) -> None:
    if backend == "socket":
        ip = loopback_ip()
        args = ["--net", "socket", "--ip", ip]
    else:
        args = ["--net", "vnet", "--forward", f"0:{app.PORT}"]
    with running("examples/asyncio_echo", *args, ready="asyncio_echo: an asyncio handler") as r:
        addr = (
            f"TCP:{ip}:{app.PORT}" if backend == "socket" else f"TCP:127.0.0.1:{r.forwarded()[0]}"
        )
        # End of input (socat half-closes): the handler answers every line, then closes.
        out = sh("socat", "-t", "10", "-", addr, input=LINES)
        greeting, rest = out.split(b"\n", 1)
        assert greeting.startswith(b"hello ") and rest == EXPECTED_AFTER_GREETING
        out = sh("socat", "-t", "10", "-", addr, input=b"x\nquit\n")
        assert out.endswith(b"\n1: X\nbye\n")
