"""Serves and connects in one process, on a loop from asyncio.new_event_loop(): under
``miragekit exec`` both ends are the stack's (loopback inside it)."""

import asyncio


async def main() -> None:
    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        writer.close()

    server = await asyncio.start_server(upper, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("localhost", port)
    writer.write(b"through the stack\n")
    print((await reader.readline()).decode().strip(), type(asyncio.get_running_loop()).__name__)
    writer.close()
    server.close()


loop = asyncio.new_event_loop()
loop.run_until_complete(main())
loop.close()
