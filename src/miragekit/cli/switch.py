"""``miragekit switch``: the virtual switch as a bridge between kernels, VMs and stacks.

Why a process of its own: namespaces, containers and QEMU guests are not in our event
loop; the switch reaches them through TAP devices, VXLAN and QEMU's socket netdevs, and
gives them the in-process switch's seeded impairments and partitions. A control socket
(JSON lines) changes them while traffic flows; ``miragekit switch ctl`` is its client.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..link import (
    FrameNetwork,
    PcapNetif,
    PortSpec,
    VnetIf,
    VnetSwitch,
    apply_link_settings,
    bridge,
    claim_path,
    link_settings,
    open_port,
    parse_link_settings,
    parse_port_spec,
    tap_bridge,
)
from ..result import Error, Ok, Unknown


class SwitchError(Exception):
    """Bad input: printed as one line, exit status 2."""


@dataclass
class StackSpec:
    """``NAME=stack:CIDR[,dhcp=FIRST-LAST][,echo=PORT]``: a miragekit stack on the switch."""

    name: str
    iface: ipaddress.IPv4Interface
    pool: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None = None
    echo: int | None = None


def parse_stack_spec(text: str) -> StackSpec:
    name, _, rest = text.partition("=")
    body = rest[len("stack:") :]
    cidr, *items = body.split(",")
    try:
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError:
        raise SwitchError(f"port {text!r}: {cidr!r} is not an IPv4 address/prefix") from None
    if iface.network.prefixlen == 32:
        raise SwitchError(f"port {text!r}: give the stack's prefix, e.g. {iface.ip}/24")
    spec = StackSpec(name, iface)
    for item in items:
        key, eq, value = item.partition("=")
        if key == "echo" and value.isdigit() and 0 < int(value) < 65536:
            spec.echo = int(value)
            continue
        first, dash, last = value.partition("-")
        if key != "dhcp" or not eq or not dash:
            known = "dhcp=FIRST-LAST, echo=PORT"
            raise SwitchError(f"port {text!r}: option {item!r} (known: {known})")
        try:
            lo, hi = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
        except ValueError:
            raise SwitchError(f"port {text!r}: dhcp={value!r} is not FIRST-LAST") from None
        if not (lo in iface.network and hi in iface.network and lo <= hi):
            raise SwitchError(f"port {text!r}: dhcp pool {value} is not inside {iface.network}")
        spec.pool = (lo, hi)
    return spec


def parse_ports(texts: list[str]) -> list[PortSpec | StackSpec]:
    out: list[PortSpec | StackSpec] = []
    seen: set[str] = set()
    for text in texts:
        name, _, rest = text.partition("=")
        if rest.startswith("stack:") and name:
            spec: PortSpec | StackSpec = parse_stack_spec(text)
        else:
            try:
                spec = parse_port_spec(text)
            except ValueError as e:
                raise SwitchError(str(e)) from None
        if spec.name in seen:
            raise SwitchError(f"port {text!r}: a port named {spec.name!r} already exists")
        seen.add(spec.name)
        out.append(spec)
    return out


def parse_links(texts: list[str], names: set[str]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for text in texts:
        name, colon, settings = text.partition(":")
        if not colon or not settings:
            raise SwitchError(f"link {text!r}: expected NAME:KEY=VALUE,...")
        if name not in names:
            raise SwitchError(f"link {text!r}: no port named {name!r}")
        try:
            out.append((name, parse_link_settings(settings)))
        except ValueError as e:
            raise SwitchError(f"link {text!r}: {e}") from None
    return out


# --- counters ----------------------------------------------------------------------------


def port_counters(port: VnetIf, device: Any) -> dict[str, int]:
    """One port's counters: frames in (from its host) and out (to it), and every drop."""
    st = port.get_stats_counters()
    out = {
        "in_frames": st.tx_pkts,
        "in_bytes": st.tx_bytes,
        "out_frames": st.rx_pkts,
        "out_bytes": st.rx_bytes,
    }
    out.update(dataclasses.asdict(port.counters))
    dev = getattr(device, "counters", None)
    if dev is not None and dataclasses.is_dataclass(dev):
        for k, v in dataclasses.asdict(dev).items():  # type: ignore[arg-type]
            out[f"dev_{k}"] = v
    return out


def format_counters(name: str, c: dict[str, int]) -> str:
    drops = " ".join(
        f"{k.removeprefix('dropped_')}={v}" for k, v in c.items() if k.startswith("dropped_") and v
    )
    extra = " ".join(
        f"{k}={c[k]}" for k in ("marked_ce", "duplicated", "reordered", "corrupted") if c[k]
    )
    line = (
        f"port {name}: in {c['in_frames']} frames {c['in_bytes']} B,"
        f" out {c['out_frames']} frames {c['out_bytes']} B, dropped {drops or 'none'}"
    )
    return line + (f", {extra}" if extra else "")


# --- the running switch --------------------------------------------------------------------


@dataclass
class Running:
    switch: VnetSwitch
    ports: dict[str, tuple[VnetIf, Any]] = field(default_factory=dict)
    closers: list[Callable[[], Any]] = field(default_factory=list)
    pcap: bool = False
    no_offload: bool = False

    def refresh_offload(self) -> bool:
        """Pass offloaded TAP frames through whole while that is sound: every port a TAP,
        no link impaired, no capture (docs/switch.md). Returns whether it is on."""
        bridges = [tap_bridge(p) for p, _ in self.ports.values()]
        on = (
            not self.pcap
            and not self.no_offload
            and all(b is not None for b in bridges)
            and all(p.link.ideal for p, _ in self.ports.values())
        )
        for b in bridges:
            if b is not None:
                b.set_offload(on)
        return on

    def counters(self) -> dict[str, dict[str, int]]:
        return {n: port_counters(p, d) for n, (p, d) in self.ports.items()}

    def print_counters(self, out: Any = None) -> None:
        for n, c in self.counters().items():
            print(format_counters(n, c), file=out or sys.stdout, flush=True)

    async def close(self) -> None:
        for closer in reversed(self.closers):
            res = closer()
            if asyncio.iscoroutine(res):
                await res
        self.closers.clear()


_COMMANDS: dict[str, tuple[str, ...]] = {
    "stats": (),
    "link": ("port", "set"),
    "partition": ("groups",),
    "block": ("from", "to"),
    "heal": (),
    "reset": (),
}


def handle_command(run: Running, line: bytes) -> dict[str, Any]:
    """One control request (a JSON object) to its reply; never raises for bad input."""
    try:
        req = json.loads(line)
    except ValueError:
        return {"ok": False, "error": "not a JSON object"}
    if not isinstance(req, dict):
        return {"ok": False, "error": "not a JSON object"}
    op = req.get("op")
    if op not in _COMMANDS:
        return {"ok": False, "error": f"op {op!r} is not one of {', '.join(_COMMANDS)}"}
    allowed = _COMMANDS[op]
    for key in req:
        if key != "op" and key not in allowed:
            known = ", ".join(allowed) or "none"
            return {"ok": False, "error": f"unknown field {key!r} in {op!r} (known: {known})"}
    for key in allowed:
        if key not in req:
            return {"ok": False, "error": f"{op!r} needs the field {key!r}"}
    sw = run.switch
    try:
        if op == "stats":
            return {"ok": True, "ports": run.counters()}
        if op == "reset":
            for p, _ in run.ports.values():
                p.reset_stats_counters()
            return {"ok": True}
        if op == "link":
            name, settings = req["port"], req["set"]
            if name not in run.ports:
                return {"ok": False, "error": f"no port named {name!r}"}
            if not isinstance(settings, dict):
                return {"ok": False, "error": "'set' must be an object of link settings"}
            link = run.ports[name][0].link
            apply_link_settings(link, settings)
            run.refresh_offload()
            return {"ok": True, "link": link_settings(link)}
        if op == "partition":
            groups = req["groups"]
            if not (isinstance(groups, list) and all(isinstance(g, list) for g in groups)):
                return {"ok": False, "error": "'groups' must be a list of lists of port names"}
            for g in groups:
                for n in g:
                    if n not in run.ports:
                        return {"ok": False, "error": f"no port named {n!r}"}
            sw.partition(*groups)
            return {"ok": True}
        if op == "block":
            for key in ("from", "to"):
                if req[key] not in run.ports:
                    return {"ok": False, "error": f"no port named {req[key]!r}"}
            sw.block(req["from"], req["to"])
            return {"ok": True}
        sw.heal()
        return {"ok": True}
    except (TypeError, ValueError) as e:
        return {"ok": False, "error": str(e)}


async def _serve_control(run: Running, path: str) -> None:
    why = claim_path(path)
    if why is not None:
        raise SwitchError(f"--control {why}")

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if not line.strip():
                    continue
                reply = handle_command(run, line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass  # a line beyond the limit, or the client went away
        finally:
            writer.close()

    try:
        server = await asyncio.start_unix_server(client, path)
    except OSError as e:
        raise SwitchError(f"--control {path}: {e.strerror or e}") from None

    async def stop() -> None:
        server.close()
        Path(path).unlink(missing_ok=True)

    run.closers.append(stop)


async def _add_stack(run: Running, spec: StackSpec) -> None:
    from ..dhcp import DhcpServerConfig
    from ..net import DhcpServerDriver
    from ..stack import DirectStackV4, Static
    from ..v1 import StackConfig

    port = run.switch.add_interface(spec.name)
    run.ports[spec.name] = (port, None)
    run.closers.append(port.disconnect)
    match await DirectStackV4.connect(StackConfig(spec.name, None, port, Static(spec.iface))):
        case Ok(stack):
            pass
        case Error(err):
            raise SwitchError(f"port {spec.name} (stack:{spec.iface}): {err}")
    if spec.echo is not None:
        stack.listen_tcpv4(port=spec.echo, callback=_echo)
    if spec.pool is not None:
        server = DhcpServerDriver(
            stack.ip_stack,
            DhcpServerConfig(
                server_ip=spec.iface.ip,
                network=spec.iface.network,
                pool_first=spec.pool[0],
                pool_last=spec.pool[1],
                routers=(spec.iface.ip,),
            ),
        )
        server.start()


async def _echo(flow: Any) -> None:
    """The stack port's TCP echo service: what a peer sends comes back."""
    while True:
        match await flow.read():
            case Ok(data):
                if not isinstance(await flow.write(data), Ok):
                    return
            case _:
                await flow.close()
                return


async def start(args: argparse.Namespace) -> Running:
    """Open every port (undoing all of it if one fails), then the pcap and control socket."""
    specs = parse_ports(args.port)
    if not specs:
        raise SwitchError("give at least one --port NAME=KIND:SPEC")
    links = parse_links(args.link, {s.name for s in specs})
    run = Running(VnetSwitch(seed=args.seed if args.seed is not None else 0))
    run.no_offload = args.no_offload
    try:
        for spec in specs:
            if isinstance(spec, StackSpec):
                await _add_stack(run, spec)
                continue
            match await open_port(spec):
                case Ok(device):
                    dev: FrameNetwork = device
                    run.closers.append(dev.disconnect)
                    run.ports[spec.name] = (bridge(run.switch, spec.name, dev), dev)
                case Error(Unknown(msg)):
                    raise SwitchError(msg)
                case Error(err):
                    raise SwitchError(f"port {spec.name}: {err}")
        for name, settings in links:
            apply_link_settings(run.ports[name][0].link, settings)
        if args.pcap is not None:
            try:
                mirror = PcapNetif(run.switch.add_interface("pcap", mirror=True), args.pcap)
            except OSError as e:
                raise SwitchError(f"--pcap {args.pcap}: {e.strerror}") from None
            run.closers.append(mirror.close)
            run.pcap = True
        if args.control is not None:
            await _serve_control(run, str(args.control))
        run.refresh_offload()
    except BaseException:
        await run.close()
        raise
    return run


async def serve(args: argparse.Namespace) -> int:
    run = await start(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    names = ", ".join(
        f"{n} ({type(d).__name__ if d else 'stack'})" for n, (_, d) in run.ports.items()
    )
    offload = ", offload on" if run.refresh_offload() else ""
    print(f"miragekit switch: ready, seed {run.switch.seed}, ports {names}{offload}", flush=True)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), args.stats)
            except TimeoutError:
                run.print_counters()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        run.print_counters()
        await run.close()
    return 0


def _switch(args: argparse.Namespace) -> int:
    if args.stats is not None and not args.stats > 0:
        return _fail("--stats: give a number of seconds > 0")
    try:
        return asyncio.run(serve(args))
    except SwitchError as e:
        return _fail(str(e))


def _fail(msg: str, prog: str = "miragekit switch") -> int:
    print(f"{prog}: {msg}", file=sys.stderr)
    return 2


# --- the control client ----------------------------------------------------------------


def ctl_request(words: list[str]) -> dict[str, Any]:
    """``stats`` | ``heal`` | ``reset`` | ``link PORT K=V,...`` | ``partition A,B C,D``
    | ``block FROM TO`` | a JSON object: the request to send."""
    if not words:
        raise SwitchError("give a command: stats, link, partition, block, heal, reset or JSON")
    op, rest = words[0], words[1:]
    if op.startswith("{"):
        try:
            req = json.loads(" ".join(words))
        except ValueError:
            raise SwitchError(f"{' '.join(words)!r} is not valid JSON") from None
        if not isinstance(req, dict):
            raise SwitchError("the JSON request must be an object")
        return req
    if op in ("stats", "heal", "reset") and not rest:
        return {"op": op}
    if op == "link" and len(rest) == 2:
        try:
            return {"op": "link", "port": rest[0], "set": parse_link_settings(rest[1])}
        except ValueError as e:
            raise SwitchError(str(e)) from None
    if op == "partition" and rest:
        return {"op": "partition", "groups": [g.split(",") for g in rest]}
    if op == "block" and len(rest) == 2:
        return {"op": "block", "from": rest[0], "to": rest[1]}
    raise SwitchError(
        f"{' '.join(words)!r}: use stats, heal, reset, link PORT K=V,..., "
        "partition A,B C,D, block FROM TO, or a JSON object"
    )


def _ctl(args: argparse.Namespace) -> int:
    prog = "miragekit switch ctl"
    try:
        req = ctl_request(args.words)
    except SwitchError as e:
        return _fail(str(e), prog)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(args.path))
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError as e:
        return _fail(f"{args.path}: {e.strerror or e}", prog)
    try:
        reply = json.loads(buf)
    except ValueError:
        return _fail(f"{args.path}: no reply from the switch", prog)
    if not reply.get("ok"):
        return _fail(str(reply.get("error")), prog)
    print(json.dumps(reply, indent=1 if req.get("op") == "stats" else None))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "switch",
        help="a learning Ethernet switch with seeded impairments between TAP, VXLAN, QEMU",
        description="Bridge TAP devices, VXLAN segments, QEMU guests and miragekit stacks, "
        "with seeded loss, delay, reordering, ECN marking and partitions (docs/switch.md).",
    )
    p.add_argument(
        "--port",
        metavar="NAME=KIND:SPEC",
        action="append",
        default=[],
        help="a port: tap:IFNAME[,netns=NS], vxlan:VNI@ADDR[:PORT],REMOTE..., "
        "qemu-stream:PATH, qemu-dgram:PATH[,remote=PATH], "
        "stack:CIDR[,dhcp=FIRST-LAST][,echo=PORT] "
        "(repeatable)",
    )
    p.add_argument(
        "--link",
        metavar="NAME:KEY=VALUE,...",
        action="append",
        default=[],
        help="impair port NAME's link: loss, latency, jitter, rate, reorder, duplicate, "
        "corrupt, mark, ecn, loss_burst, reorder_delay, queue_frames, up (repeatable)",
    )
    p.add_argument("--seed", metavar="N", type=int, help="seed of every impairment (default 0)")
    p.add_argument("--pcap", metavar="FILE", type=Path, help="record every frame entering")
    p.add_argument("--control", metavar="PATH", type=Path, help="control socket (JSON lines)")
    p.add_argument("--stats", metavar="S", type=float, help="print counters every S seconds")
    p.add_argument(
        "--no-offload",
        action="store_true",
        help="never pass the kernel's 64 KiB TAP segments through whole: every frame the "
        "switch carries is a wire-sized frame (as with an impairment or --pcap)",
    )
    p.set_defaults(func=_switch)
    sub2 = p.add_subparsers(dest="switch_command", metavar="ctl")
    ctl = sub2.add_parser("ctl", help="send one command to a running switch's control socket")
    ctl.add_argument("path", metavar="PATH", type=Path)
    ctl.add_argument("words", metavar="COMMAND", nargs="+")
    ctl.set_defaults(func=_ctl)
