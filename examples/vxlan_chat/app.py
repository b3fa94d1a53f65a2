"""vxlan_chat: processes on one VXLAN segment greet each other over UDP broadcast.

Each member builds an IPv4 stack on its NETWORK device (a ``VxlanNetif`` when run on an
overlay), takes the address 10.42.X.Y/16 from the last two bytes of its MAC (so members
need no address plan), then broadcasts a greeting to port 5000 every second and logs the
greetings of the others. Run several, each with its own local address and the others'
as remotes (see docs/vxlan.md)::

    miragekit run examples/vxlan_chat --net vxlan:42@127.0.0.1:4789,127.0.0.2,127.0.0.3
"""

from __future__ import annotations

import ipaddress

from miragekit import v1
from miragekit.macaddr import MacAddr
from miragekit.net import IPv4Stack

PORT = 5000
ROUNDS = 5
INTERVAL = 1.0
NETWORK = ipaddress.IPv4Network("10.42.0.0/16")


def address_for(mac: MacAddr) -> ipaddress.IPv4Interface:
    """10.42.X.Y/16 from the MAC's last two bytes (avoiding .0.0 and the broadcast)."""
    host = int.from_bytes(mac.packed[4:6], "big") % (NETWORK.num_addresses - 2) + 1
    return ipaddress.IPv4Interface((int(NETWORK.network_address) + host, NETWORK.prefixlen))


async def start(console: v1.Console, net: v1.Network, time: v1.Time) -> None:
    me = address_for(net.mac())
    stack = await IPv4Stack.connect(net, cidr=me)
    await console.log_s(f"{me.ip} on {net.mac()} joined")

    async def heard(
        src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, sport: int, buf: memoryview
    ) -> None:
        if src != me.ip:
            await console.log_s(f"{src} says {bytes(buf).decode(errors='replace')}")

    stack.listen_udpv4(port=PORT, callback=heard)
    try:
        for i in range(ROUNDS):
            msg = f"hello #{i} from {me.ip}".encode()
            await stack.udp.write(msg, dest_ip=NETWORK.broadcast_address, dest_port=PORT)
            await time.sleep(INTERVAL)
    finally:
        await stack.disconnect()
