"""An ordinary aiohttp server, written for the host's network; ``miragekit exec`` runs it
unchanged on miragekit's stack (tests/test_exec.py)."""

import sys

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.Response(text=f"hello {peer[0] if peer else '?'} from aiohttp\n")


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


app = web.Application()
app.add_routes([web.get("/", hello), web.post("/echo", echo)])
web.run_app(app, host="0.0.0.0", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
