"""The aiohttp server ``bench/http_aiohttp.py`` measures: an ordinary program for the
host's network, run unchanged on host sockets and under ``miragekit exec``.

``python bench/programs/aiohttp_app.py PORT [CERT KEY]``: ``/`` answers a short text, ``/bytes?mb=N``
streams N MiB; with CERT and KEY it serves HTTPS.
"""

import ssl
import sys

from aiohttp import web

BLOCK = b"\0" * (1 << 20)


async def index(request: web.Request) -> web.Response:
    return web.Response(text="hello\n")


async def blob(request: web.Request) -> web.StreamResponse:
    mb = int(request.query.get("mb", "10"))
    resp = web.StreamResponse()
    resp.content_length = mb << 20
    await resp.prepare(request)
    for _ in range(mb):
        await resp.write(BLOCK)
    return resp


app = web.Application()
app.add_routes([web.get("/", index), web.get("/bytes", blob)])
ctx = None
if len(sys.argv) > 3:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
web.run_app(
    app,
    host="0.0.0.0",
    port=int(sys.argv[1]),
    ssl_context=ctx,
    print=lambda s: print(s, flush=True),
    access_log=None,
)
