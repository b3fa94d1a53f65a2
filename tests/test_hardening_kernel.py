"""Path-MTU discovery against the Linux kernel as a router (docs/hardening.md): our stack
on a TAP whose kernel side forwards to a second namespace over a 1280-byte link. Our
segments carry DF, so the router answers "fragmentation needed" instead of cutting them;
the stack lowers its segment size and the transfer completes byte-exact, with no
fragment made on the way."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
from typing import Any

import pytest
from tests.flowkit import drain_hash
from tests.kernelnet import KERNEL_IP, OUR_IP, KernelNet, run
from tests.netns import namespaces, ns_exec, sh

from miragekit.link import TapNetif
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

pytestmark = pytest.mark.kernel

FAR_IP = "10.78.0.2"
ROUTER_FAR_IP = "10.78.0.1"


async def _ip_counter(ns: str, name: str) -> int:
    rc, out = await ns_exec(ns, "cat", "/proc/net/snmp")
    assert rc == 0, out
    head, values = [ln.split() for ln in out.decode().splitlines() if ln.startswith("Ip:")][:2]
    return int(values[head.index(name)])


def test_df_and_fragmentation_needed_through_a_kernel_router(knet: KernelNet) -> None:
    payload = os.urandom(3 << 20)
    want = (len(payload), hashlib.sha256(payload).hexdigest())

    async def main(far: str) -> None:
        r = await TapNetif.connect(knet.tap)
        assert isinstance(r, Ok), r
        netif = r.value
        knet.move_in()
        # The router: the TAP's kernel side, forwarding to ``far`` over a 1280-byte link.
        sh("ip", "-n", knet.ns, "link", "add", "pa", "type", "veth", "peer", "name", "pb",
           "netns", far)  # fmt: skip
        sh("ip", "-n", knet.ns, "addr", "add", f"{ROUTER_FAR_IP}/24", "dev", "pa")
        sh("ip", "-n", far, "addr", "add", f"{FAR_IP}/24", "dev", "pb")
        for ns, dev in ((knet.ns, "pa"), (far, "pb")):
            sh("ip", "-n", ns, "link", "set", dev, "mtu", "1280", "up")
        # The far host offers MSS 1460 all the same (a route's advmss, as behind a
        # tunnel): only "fragmentation needed" can tell us the path is narrower.
        sh("ip", "-n", far, "route", "add", "default", "via", ROUTER_FAR_IP, "advmss", "1460")
        sh("ip", "netns", "exec", knet.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        cfg = StackConfig("tap", None, netif, Static(f"{OUR_IP}/24", [KERNEL_IP]))
        s = await DirectStackV4.connect(cfg)
        assert isinstance(s, Ok), s
        stack = s.value
        try:
            got: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

            async def sink(flow: Any) -> None:
                got.set_result(await drain_hash(flow))

            async def source(flow: Any) -> None:
                await flow.write(payload)

            stack.listen_tcpv4(port=9, callback=source)
            frags_before = await _ip_counter(knet.ns, "FragCreates")
            rc, out = await ns_exec(
                far, "sh", "-c", f"socat -u TCP:{OUR_IP}:9 - | sha256sum", timeout=60
            )
            assert rc == 0, out
            assert out.decode().split()[0] == want[1]
            ip = stack.ipv4()
            assert ip.path_mtu(ipaddress.IPv4Address(FAR_IP)) == 1280
            assert ip.counters.rx_frag_needed >= 1
            # DF: the router never cut one of our segments into fragments.
            assert await _ip_counter(knet.ns, "FragCreates") == frags_before
            # And the other way: a kernel sender in the far namespace reaches us too.
            stack.listen_tcpv4(port=10, callback=sink)
            rc, out = await ns_exec(
                far, "socat", "-u", "-", f"TCP:{OUR_IP}:10", stdin=payload, timeout=60
            )
            assert rc == 0, out
            assert await asyncio.wait_for(got, 30) == want
            assert stack.tcpv4().internal_errors == 0
        finally:
            await stack.disconnect()
            await netif.disconnect()

    with namespaces("far") as (far,):
        run(main(far), timeout=120)
