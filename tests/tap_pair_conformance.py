"""Run inside a ``mk-`` namespace (tests/test_tap_conformance.py): two TAP devices joined
by a kernel bridge are a NETWORK pair, so the NETWORK suite runs on TapNetif."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from miragekit.link import TapNetif
from miragekit.testing import check_network_pair
from miragekit.v1 import Network


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


async def main() -> None:
    for tap in ("mk-a", "mk-b"):
        sh("ip", "tuntap", "add", "mode", "tap", "name", tap)
    sh("ip", "link", "add", "mk-br", "type", "bridge")
    for dev in ("mk-a", "mk-b"):
        sh("ip", "link", "set", dev, "master", "mk-br")
        sh("ip", "link", "set", dev, "up")
    sh("ip", "link", "set", "mk-br", "up")

    async def pair() -> tuple[Network, Network]:
        a = (await TapNetif.connect("mk-a")).unwrap()
        b = (await TapNetif.connect("mk-b")).unwrap()
        # Attaching gives the device its carrier; the bridge forwards once it noticed.
        for _ in range(200):
            states = [
                Path(f"/sys/class/net/{t}/brport/state").read_text() for t in ("mk-a", "mk-b")
            ]
            if states == ["3\n", "3\n"]:  # BR_STATE_FORWARDING
                break
            await asyncio.sleep(0.01)
        return a, b

    await check_network_pair(pair)
    print("TapNetif pair conforms")


if __name__ == "__main__":
    asyncio.run(main())
