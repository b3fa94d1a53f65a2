"""``miragekit run APP`` and ``miragekit describe APP``."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from pathlib import Path
from typing import Any

from ..runner import (
    AppError,
    LinkError,
    OptionError,
    Options,
    describe_dot,
    describe_text,
    load_app,
    parse_forward,
    parse_size,
    run_app,
)


def _add_device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("app", metavar="APP", help="directory with app.py, a .py file, or a module")
    p.add_argument("--block", metavar="FILE", type=Path, help="BLOCK on FILE (created if missing)")
    p.add_argument("--read-only", action="store_true", help="open --block read-only")
    p.add_argument(
        "--block-size",
        metavar="SIZE",
        default="32M",
        help="size of a new --block file or of the memory block device (default 32M)",
    )
    p.add_argument("--kv", metavar="DIR|TAR", type=Path, help="KV_RO over a directory or tar")
    p.add_argument("--seed", metavar="N", type=int, help="seed RANDOM and ENTROPY (reproducible)")
    p.add_argument("--sim", action="store_true", help="run in simulated time")
    p.add_argument(
        "--net",
        metavar="socket|vnet|tap[:NAME]|vxlan:SPEC",
        default="socket",
        help="STACKV4 backend: host sockets (default), the virtual switch, a TAP device, or a "
        "VXLAN segment, vxlan:VNI@ADDR[:PORT],REMOTE[:PORT]... (see docs/vxlan.md)",
    )
    p.add_argument(
        "--ip",
        metavar="CIDR",
        help="the stack's address (socket: the address listeners bind to, default 127.0.0.1; "
        "vnet and tap: default 10.0.0.2/24)",
    )
    p.add_argument("--gateway", metavar="IP", help="the direct stack's default gateway")
    p.add_argument(
        "--ip6",
        metavar="CIDR|slaac",
        action="append",
        default=[],
        help="IPv6 on the direct stack besides IPv4: a static address (e.g. fd00::2/64) or "
        "slaac (from router advertisements); repeatable. The link-local address is always on, "
        "and listeners answer on both families",
    )
    p.add_argument(
        "--dhcp",
        action="store_true",
        help="configure the direct stack by DHCP (on --net vnet the runner serves DHCP too)",
    )
    p.add_argument(
        "--forward",
        metavar="HOSTPORT:PORT",
        action="append",
        default=[],
        help="accept TCP on 127.0.0.1:HOSTPORT and carry it to the app's PORT through the "
        "direct stack (repeatable)",
    )
    p.add_argument(
        "--dns",
        metavar="IP",
        action="append",
        default=[],
        help="a DNS server for the app's resolver (repeatable; default: the DHCP lease's "
        "on the direct stack, the host's on --net socket); see docs/dns.md",
    )
    p.add_argument(
        "--pcap", metavar="FILE", type=Path, help="record the direct stack's frames to FILE"
    )
    p.add_argument(
        "--offload",
        action="store_true",
        help="--net tap: checksum and segmentation offload (64 KiB TCP segments to and "
        "from the kernel)",
    )


def _dns_server(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise OptionError(f"--dns {text}: not an IP address (e.g. --dns 10.0.0.1)") from None


def _options(args: argparse.Namespace) -> Options:
    opts = Options(
        block=args.block,
        read_only=args.read_only,
        block_size=parse_size(args.block_size),
        kv=args.kv,
        seed=args.seed,
        sim=args.sim,
        net=args.net,
        ip=args.ip,
        gateway=args.gateway,
        forward=tuple(parse_forward(f) for f in args.forward),
        pcap=args.pcap,
        dhcp=args.dhcp,
        ip6=tuple(args.ip6),
        offload=args.offload,
        dns=tuple(_dns_server(a) for a in args.dns),
    )
    if args.read_only and args.block is None:
        raise OptionError("--read-only needs --block FILE")
    opts.check()
    return opts


def _fail(msg: str) -> int:
    print(f"miragekit: {msg}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    try:
        opts = _options(args)
        app = load_app(args.app)
        if opts.sim:
            from .. import sim

            return sim.run(run_app(app, opts), seed=opts.seed or 0)
        return asyncio.run(run_app(app, opts))
    except (OptionError, AppError, LinkError) as e:
        return _fail(str(e))
    except OSError as e:  # e.g. a port in use or privileged, raised while the app starts
        print(f"miragekit: {args.app}: {e}", file=sys.stderr)
        return 1


def _describe(args: argparse.Namespace) -> int:
    try:
        opts = _options(args)
        app = load_app(args.app)
        print(describe_dot(app, opts) if args.dot else describe_text(app, opts))
    except (OptionError, AppError, LinkError) as e:
        return _fail(str(e))
    return 0


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="link an application to backends and run it")
    _add_device_options(run)
    run.set_defaults(func=_run)
    desc = sub.add_parser("describe", help="print the device graph that run would build")
    _add_device_options(desc)
    desc.add_argument("--dot", action="store_true", help="as Graphviz dot")
    desc.set_defaults(func=_describe)
