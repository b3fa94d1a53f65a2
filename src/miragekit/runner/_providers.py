"""Which implementation serves each signature, given the options.

This is where Mirage's functor application happens: ``start``'s parameter types name the
signatures, and each provider picks and connects a backend. A provider may need other
devices (a filesystem needs a block device); the graph builds those first.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .. import v1
from ..macaddr import MacAddr
from ..result import Error, Ok, message
from ._options import Options, is_fat


class DeviceSource(Protocol):
    async def get(self, signature: type) -> Any: ...

    async def add(self, device: Any) -> None:
        """Keep a helper device (a server the app needs) to disconnect with the rest."""
        ...


@dataclass(frozen=True)
class Choice:
    """The backend picked for one signature: a label for ``describe`` and how to build it."""

    label: str
    needs: tuple[type, ...]
    build: Callable[[DeviceSource], Awaitable[Any]]


class LinkError(Exception):
    """A device could not be connected; the message is one line for the user."""


def _unwrap(what: str, r: Ok[Any] | Error[Any]) -> Any:
    match r:
        case Ok(value):
            return value
        case Error(err):
            raise LinkError(f"{what}: {message(err)}")
    raise AssertionError(r)  # pragma: no cover


def _console(opts: Options) -> Choice:
    async def build(_: DeviceSource) -> Any:
        from ..console import Console

        return _unwrap("console", await Console.connect("console"))

    return Choice("miragekit.console.Console (stdin/stdout)", (), build)


def _channel(opts: Options) -> Choice:
    async def build(graph: DeviceSource) -> Any:
        from ..channel import Channel

        return Channel.create(await graph.get(v1.Console))

    return Choice("miragekit.channel.Channel (over the CONSOLE)", (v1.Console,), build)


def _time(opts: Options) -> Choice:
    async def build(_: DeviceSource) -> Any:
        from ..time import Time

        return Time()

    return Choice("miragekit.time.Time" + (" (simulated)" if opts.sim else ""), (), build)


def _clock(opts: Options) -> Choice:
    async def build(_: DeviceSource) -> Any:
        if opts.sim:
            from .. import sim

            return sim.clock()
        from ..clock import Clock

        return Clock()

    label = "miragekit.clock.Clock" + (" (simulated, from --clock-start)" if opts.sim else "")
    return Choice(label, (), build)


def _random(opts: Options) -> Choice:
    async def build(_: DeviceSource) -> Any:
        from ..random import Random

        return Random(seed=opts.seed)

    label = "miragekit.random.Random" + (f" (seed {opts.seed})" if opts.seed is not None else "")
    return Choice(label, (), build)


def _entropy(opts: Options) -> Choice:
    if opts.seed is not None:

        async def seeded(_: DeviceSource) -> Any:
            from ..entropy import SeededEntropy

            seed = opts.seed
            assert seed is not None
            return _unwrap("entropy", await SeededEntropy.connect("entropy", seed=seed))

        return Choice(f"miragekit.entropy.SeededEntropy (seed {opts.seed})", (), seeded)

    async def build(_: DeviceSource) -> Any:
        from ..entropy import Entropy

        return _unwrap("entropy", await Entropy.connect("entropy"))

    return Choice("miragekit.entropy.Entropy (operating system)", (), build)


def _block(opts: Options) -> Choice:
    path = opts.block
    if path is None:
        size = opts.block_size

        async def memory(_: DeviceSource) -> Any:
            from ..block import MemoryBlock

            return MemoryBlock("memory", size // 512)

        return Choice(f"miragekit.block.MemoryBlock ({size} bytes, in memory)", (), memory)

    async def build(_: DeviceSource) -> Any:
        from ..block import FileBlock

        if not path.exists():
            with open(path, "wb") as f:
                f.truncate(opts.block_size)
        return _unwrap(
            f"--block {path}", await FileBlock.connect(str(path), read_only=opts.read_only)
        )

    mode = "read-only" if opts.read_only else "read-write"
    return Choice(f"miragekit.block.FileBlock ({path}, {mode})", (), build)


def _kv(opts: Options) -> Choice:
    path = opts.kv
    if path is None:
        raise LinkError("a KV_RO store is needed: give --kv DIR, --kv ARCHIVE.tar or --kv FAT.img")
    if path.is_dir():

        async def dirkv(_: DeviceSource) -> Any:
            from ..kv import DirKV

            return _unwrap(f"--kv {path}", await DirKV.connect(str(path)))

        return Choice(f"miragekit.kv.DirKV ({path})", (), dirkv)

    if is_fat(path):

        async def fatkv(_: DeviceSource) -> Any:
            from ..block import FileBlock
            from ..fs import FatKV

            blk = _unwrap(f"--kv {path}", await FileBlock.connect(path, read_only=True))
            return _unwrap(f"--kv {path}", await FatKV.connect(blk))

        return Choice(f"miragekit.fs.FatKV ({path}, read-only)", (), fatkv)

    async def tarkv(_: DeviceSource) -> Any:
        from ..kv import TarKV

        return _unwrap(f"--kv {path}", await TarKV.connect(str(path)))

    return Choice(f"miragekit.kv.TarKV ({path})", (), tarkv)


def _fs(opts: Options) -> Choice:
    async def build(graph: DeviceSource) -> Any:
        from ..fs import FatFS

        block = await graph.get(v1.Block)
        return _unwrap("fs", await FatFS.connect(block))

    return Choice("miragekit.fs.FatFS", (v1.Block,), build)


def _network(opts: Options) -> Choice:
    kind = opts.net_kind
    if kind == "socket":
        raise LinkError("--net socket has no NETWORK device; use --net vnet or --net tap[:NAME]")
    pcap = opts.pcap

    def wrap(netif: Any) -> Any:
        if pcap is None:
            return netif
        from ..link import PcapNetif

        try:
            return PcapNetif(netif, pcap)
        except OSError as e:
            raise LinkError(f"--pcap {pcap}: {e.strerror or e}") from None

    over = f"miragekit.link.PcapNetif ({pcap}) over " if pcap is not None else ""
    if kind == "vnet":

        async def vnet(_: DeviceSource) -> Any:
            from ..link import VnetSwitch

            switch = VnetSwitch(seed=opts.seed)
            return wrap(switch.add_interface("app", mac=opts.mac))

        return Choice(f"{over}miragekit.link.VnetIf ('app' on a new VnetSwitch)", (), vnet)
    if kind == "vxlan":
        spec = opts.net

        async def vxlan(_: DeviceSource) -> Any:
            from ..link import VxlanNetif

            vx: Any = spec
            if opts.mac is not None:
                from ..link import parse_vxlan_spec

                try:
                    vx = dataclasses.replace(parse_vxlan_spec(spec), mac=MacAddr(opts.mac))
                except ValueError as e:
                    raise LinkError(f"--net {spec}: {e}") from None
            return wrap(_unwrap(f"--net {spec}", await VxlanNetif.connect(vx)))

        return Choice(f"{over}miragekit.link.VxlanNetif ({spec})", (), vxlan)
    name = opts.tap_name
    if kind == "packet":

        async def packet(_: DeviceSource) -> Any:
            from ..link import PacketNetif

            r = await PacketNetif.connect(name, mac=opts.mac)
            return wrap(_unwrap(f"--net packet:{name}", r))

        return Choice(f"{over}miragekit.link.PacketNetif ({name})", (), packet)

    async def tap(_: DeviceSource) -> Any:
        from ..link import TapNetif

        r = await TapNetif.connect(name, offload=opts.offload, mac=opts.mac)
        if isinstance(r, Error):
            msg = message(r.error)
            if "not permitted" in msg or "denied" in msg:
                hint = (
                    "creating or opening a TAP device needs root or CAP_NET_ADMIN; or create "
                    f'it first: ip tuntap add mode tap user "$(id -un)" name {name}'
                )
            elif "busy" in msg:
                hint = f"another process has {name} open: stop it, or use another device"
            elif "Invalid argument" in msg:
                hint = f"is there another kind of interface named {name}?"
            else:
                hint = ""
            raise LinkError(f"--net tap:{name}: {msg}" + (f" ({hint})" if hint else ""))
        return wrap(r.value)

    how = f"{name}, offload" if opts.offload else name
    return Choice(f"{over}miragekit.link.TapNetif ({how})", (), tap)


def _stack(opts: Options) -> Choice:
    if opts.direct:
        return _direct_stack(opts)
    if opts.sim:
        raise LinkError("--sim with a STACKV4 needs --net vnet (host sockets run in real time)")
    ip = ipaddress.IPv4Interface(opts.ip).ip if opts.ip else ipaddress.IPv4Address("127.0.0.1")

    async def build(_: DeviceSource) -> Any:
        from ..stack import SocketConfig, SocketStackV4

        return _unwrap("--net socket", await SocketStackV4.connect(SocketConfig(ips=(ip,))))

    return Choice(f"miragekit.stack.SocketStackV4 (host sockets on {ip})", (), build)


def _direct_stack(opts: Options) -> Choice:
    if opts.net_kind == "vxlan" and opts.ip is None and not opts.dhcp:
        # Only a STACKV4 needs an address: an app that takes the NETWORK alone (as
        # examples/vxlan_chat) picks its own.
        raise LinkError(
            f"--net {opts.net}: the stack needs an address on the segment: give --ip "
            "(e.g. --ip 10.42.0.2/24) or --dhcp"
        )
    if opts.dhcp:
        return _dhcp_stack(opts)
    iface = opts.interface()
    gateways = (opts.gateway,) if opts.gateway else ()

    async def build(graph: DeviceSource) -> Any:
        from ..stack import DirectStackV4, Static

        netif = await graph.get(v1.Network)
        config = v1.StackConfig("stack", None, netif, Static(iface, gateways))
        ip6 = opts.ipv6_config()
        return _unwrap(f"--net {opts.net}", await DirectStackV4.connect(config, ip6=ip6))

    via = f", gateway {opts.gateway}" if opts.gateway else ""
    label = f"miragekit.stack.DirectStackV4 ({iface}{via}{_ip6_label(opts)})"
    return Choice(label, (v1.Network,), build)


#: On ``--net vnet --dhcp`` the runner serves DHCP on the switch from this address.
VNET_DHCP_SERVER = ipaddress.IPv4Interface("10.0.0.1/24")


def _dhcp_stack(opts: Options) -> Choice:
    async def build(graph: DeviceSource) -> Any:
        from ..stack import DHCP, DirectStackV4

        netif = await graph.get(v1.Network)
        if opts.net_kind == "vnet":
            await graph.add(await _vnet_dhcp_server(netif))
        config = v1.StackConfig("stack", None, netif, DHCP())
        ip6 = opts.ipv6_config()
        return _unwrap(f"--net {opts.net} --dhcp", await DirectStackV4.connect(config, ip6=ip6))

    where = (
        f"from miragekit's DHCP server at {VNET_DHCP_SERVER.ip} on the switch"
        if opts.net_kind == "vnet"
        else "from the network's DHCP server"
    )
    label = f"miragekit.stack.DirectStackV4 (DHCP, {where}{_ip6_label(opts)})"
    return Choice(label, (v1.Network,), build)


def _ip6_label(opts: Options) -> str:
    if not opts.ip6:
        return ""
    return "; IPv6: link-local, " + ", ".join(opts.ip6)


async def _vnet_dhcp_server(netif: Any) -> Any:
    """A DHCP server on the app's switch (its own stack at 10.0.0.1), so --dhcp works there."""
    from ..dhcp import DhcpServerConfig
    from ..net import DhcpServerDriver, IPv4Stack

    switch = getattr(netif, "inner", netif).switch
    net = VNET_DHCP_SERVER.network
    stack = await IPv4Stack.connect(switch.add_interface("dhcp-server"), cidr=str(VNET_DHCP_SERVER))
    server = DhcpServerDriver(
        stack,
        DhcpServerConfig(
            server_ip=VNET_DHCP_SERVER.ip,
            network=net,
            pool_first=net.network_address + 100,
            pool_last=net.network_address + 199,
            routers=(VNET_DHCP_SERVER.ip,),
        ),
    )
    server.start()
    return stack


def _resolver(opts: Options) -> Choice:
    """A resolver over the app's stack: ours on the direct stack, the host's on sockets."""

    async def build(graph: DeviceSource) -> Any:
        import random

        from ..dns import HostResolver, Resolver

        stack = await graph.get(v1.StackV4)
        if not opts.direct:
            return HostResolver(opts.dns)
        # With --seed, query IDs and source ports replay too (a simulation stays exact).
        rng = random.Random(f"dns-{opts.seed}") if opts.seed is not None else None
        return Resolver(stack, opts.dns, rng=rng)

    servers = ", ".join(opts.dns) or ("the DHCP lease's" if opts.dhcp else "none given")
    if opts.direct:
        label = f"miragekit.dns.Resolver (servers: {servers})"
    else:
        label = f"miragekit.dns.HostResolver ({', '.join(opts.dns) or 'the host resolver'})"
    return Choice(label, (v1.StackV4,), build)


#: The signature each application parameter may ask for, and how it is chosen.
PROVIDERS: dict[type, Callable[[Options], Choice]] = {
    v1.Console: _console,
    v1.Time: _time,
    v1.Clock: _clock,
    v1.Random: _random,
    v1.Entropy: _entropy,
    v1.Block: _block,
    v1.KVRO: _kv,
    v1.FS: _fs,
    v1.Network: _network,
    v1.StackV4: _stack,
    v1.Channel: _channel,
}
#: Resolvers, by class name; matched without importing miragekit.dns (and dnspython)
#: unless the application itself did.
DNS_TYPES = ("NameResolver", "Resolver", "HostResolver")


def signature_name(sig: object) -> str:
    for name, proto in v1.SIGNATURES.items():
        if proto is sig:
            return name
    return getattr(sig, "__qualname__", repr(sig))


def _qualified(sig: type) -> str:
    """``v1.Block`` for a v1 signature, the full dotted name for any other type."""
    if sig.__module__ == v1.__name__:
        return f"v1.{sig.__name__}"
    return f"{sig.__module__}.{sig.__name__}"


def _signature_of(cls: type) -> type | None:
    """The ``v1`` signature a concrete class implements (the one with most members)."""
    best: tuple[int, type] | None = None
    for proto in PROVIDERS:
        names = {n for n in dir(proto) if not n.startswith("_")}
        fits = names and all(hasattr(cls, n) for n in names)
        if fits and (best is None or len(names) > best[0]):
            best = (len(names), proto)
    return None if best is None else best[1]


def choose(signature: object, opts: Options) -> Choice:
    provider = PROVIDERS.get(signature) if isinstance(signature, type) else None
    if (
        provider is None
        and getattr(signature, "__module__", "").startswith("miragekit.dns")
        and getattr(signature, "__name__", "") in DNS_TYPES
    ):
        provider = _resolver
    if provider is None:
        if isinstance(signature, type) and (proto := _signature_of(signature)) is not None:
            raise LinkError(
                f"{signature.__module__}.{signature.__qualname__} is an implementation: "
                f"annotate the parameter with its signature, {_qualified(proto)}, and the "
                "runner picks the backend"
            )
        known = ", ".join(_qualified(s) for s in PROVIDERS) + ", miragekit.dns.NameResolver"
        raise LinkError(f"no backend provides {signature_name(signature)} (known: {known})")
    return provider(opts)
