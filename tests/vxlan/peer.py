"""One member of a VXLAN segment, as ``miragekit run --net vxlan:...`` will start it:
``python -m tests.vxlan.peer SPEC [ROUNDS]`` builds the VxlanNetif from the spec, a console
on stdout and the clock, and runs examples/vxlan_chat's ``start`` once a line arrives on
stdin (after "ready" on stderr). Counters go to stderr as one JSON line at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

from examples.vxlan_chat import app

from miragekit.console import Console
from miragekit.link import VxlanNetif
from miragekit.result import Ok
from miragekit.time import Time


async def main(spec: str) -> int:
    r = await VxlanNetif.connect(spec)
    if not isinstance(r, Ok):
        print(f"vxlan: {r.error}", file=sys.stderr)
        return 1
    net = r.value
    # Start together: say we are bound, wait for the go (one line on stdin).
    print("ready", file=sys.stderr, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    console = Console(stdin_fd=None)
    try:
        await app.start(console, net, Time())
    finally:
        await net.disconnect()
    out = {"stats": dataclasses.asdict(net.get_stats_counters())}
    out["counters"] = dataclasses.asdict(net.counters)
    print(json.dumps(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2:
        app.ROUNDS = int(sys.argv[2])
        app.INTERVAL = 0.3
    sys.exit(asyncio.run(main(sys.argv[1])))
