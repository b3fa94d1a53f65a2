"""A server written with the loop's socket calls (bind, listen, sock_accept, sock_recv,
sock_sendall), and a streams client, in one program."""

import asyncio
import socket


async def serve(listener: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    conn, peer = await loop.sock_accept(listener)
    with conn:
        data = await loop.sock_recv(conn, 100)
        await loop.sock_sendall(conn, data.upper() + f" from {peer[0]}".encode())


async def main() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    listener.setblocking(False)
    task = asyncio.create_task(serve(listener))
    await asyncio.sleep(0)
    port = listener.getsockname()[1]
    reader, writer = await asyncio.open_connection("10.0.0.2", port)
    writer.write(b"accepted")
    print((await reader.read()).decode())
    writer.close()
    await task


asyncio.run(main())
