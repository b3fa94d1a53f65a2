"""asyncio_echo: an unmodified asyncio protocol handler served on any STACKV4.

``handle`` below is ordinary asyncio code, written for ``asyncio.start_server``: it knows
nothing about miragekit. ``start`` serves it on the stack the runner gives it with
:func:`miragekit.aio.start_server`, a one-line change::

    await asyncio.start_server(handle, "0.0.0.0", PORT)        # on the host's sockets
    await miragekit.aio.start_server(handle, stack, PORT)      # on any STACKV4

So the same handler runs on the host's sockets (``--net socket``) and on miragekit's own
TCP/IP (``--net vnet --forward 7007:7007``, or ``--net tap``).

The protocol: a greeting line, then each line back numbered and upper-cased; ``quit``
ends the session, and so does the end of the input (after the last answer).
"""

from __future__ import annotations

import asyncio

from miragekit import aio, v1

PORT = 7007


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    host = writer.get_extra_info("peername")[0]
    writer.write(f"hello {host}, send lines; 'quit' to end\n".encode())
    await writer.drain()
    n = 0
    while line := await reader.readline():
        text = line.decode(errors="replace").strip()
        if text == "quit":
            writer.write(b"bye\n")
            break
        n += 1
        writer.write(f"{n}: {text.upper()}\n".encode())
        await writer.drain()
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def start(console: v1.Console, stack: v1.StackV4) -> None:
    server = await aio.start_server(handle, stack, PORT)
    ips = ", ".join(str(ip) for ip in stack.ipv4().get_ip())
    await console.log_s(f"asyncio_echo: an asyncio handler on {ips} port {PORT}")
    async with server:
        await stack.listen()
