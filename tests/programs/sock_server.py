"""Binds and listens on a socket of its own, then serves it with asyncio (as uvicorn and
aiohttp's SockSite do): under ``miragekit exec`` the stack listens on that address."""

import asyncio
import socket


async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write((await reader.readline()).upper())
    writer.close()


async def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    server = await asyncio.start_server(upper, sock=sock)
    port = sock.getsockname()[1]
    assert server.sockets[0].getsockname()[1] == port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"own socket\n")
    print((await reader.readline()).decode().strip(), port > 0)
    writer.close()
    server.close()


asyncio.run(main())
