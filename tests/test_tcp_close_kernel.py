"""A close while the kernel keeps sending ends the connection with RST (RFC 1122
4.2.2.13): the kernel's sender gets ECONNRESET and nothing stays in LAST-ACK or
FIN-WAIT, where before our stack advertised a zero window forever."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from tests.kernelnet import OUR_IP, KernelNet, run
from tests.test_direct_kernel import with_direct

from miragekit.result import Ok
from miragekit.stack import DirectStackV4

pytestmark = pytest.mark.kernel

#: Sends for up to 20 s; prints how its connection ended.
SENDER = f"""
import socket, time
s = socket.create_connection(("{OUR_IP}", 9), timeout=10)
s.settimeout(10)
end = time.monotonic() + 20
try:
    while time.monotonic() < end:
        s.sendall(b"x" * 65536)
    print("not reset")
except OSError as e:
    print("ended:", e.__class__.__name__)
"""


@pytest.mark.parametrize("unread", [True, False])
def test_kernel_sender_is_reset_when_we_close(knet: KernelNet, unread: bool) -> None:
    """``unread``: close with data still buffered; else read all, close, more arrives."""

    async def body(stack: DirectStackV4) -> None:
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def read_once_and_close(flow: Any) -> None:
            assert isinstance(await flow.read(), Ok)
            if unread:
                await asyncio.sleep(0.2)  # more arrives and waits unread
            await flow.close()
            closed.set_result(None)

        stack.listen_tcpv4(port=9, callback=read_once_and_close)
        rc, out = await knet.exec(sys.executable, "-c", SENDER, timeout=30)
        assert rc == 0, out
        ended = out.decode().strip()
        if unread:
            assert ended == "ended: ConnectionResetError"
        else:
            # Our FIN came first: Linux, reset in CLOSE-WAIT, reports EPIPE unless the RST
            # overtook the FIN's processing (ECONNRESET). A reset either way.
            assert ended in ("ended: ConnectionResetError", "ended: BrokenPipeError"), ended
        await closed
        rc, ss = await knet.exec("ss", "-tanH")
        assert rc == 0
        assert ss.decode().strip() == "", ss  # no LAST-ACK, no FIN-WAIT, nothing

    run(with_direct(knet, body), timeout=60)
