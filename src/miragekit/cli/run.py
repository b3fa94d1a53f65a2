"""``miragekit run APP`` and ``miragekit describe APP``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import signal
import sys
from pathlib import Path
from typing import Any

from ..runner import (
    DEFAULT_GRACE,
    App,
    AppError,
    LinkError,
    OptionError,
    Options,
    describe_dot,
    describe_text,
    load_app,
    parse_clock_start,
    parse_forward,
    parse_setting,
    parse_size,
    parse_tls,
    run_app,
    unused_flags,
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
    p.add_argument(
        "--kv",
        metavar="DIR|TAR|IMG",
        type=Path,
        help="KV_RO over a directory, a tar archive or a FAT image (read-only)",
    )
    p.add_argument("--seed", metavar="N", type=int, help="seed RANDOM and ENTROPY (reproducible)")
    p.add_argument("--sim", action="store_true", help="run in simulated time")
    p.add_argument(
        "--tls",
        metavar="CERT,KEY",
        help="a TLS server context from a PEM certificate (chain) and its key, for an app "
        "whose start() takes an ssl.SSLContext (static_website: HTTPS on port 443)",
    )
    add_net_options(p)


def add_net_options(p: argparse.ArgumentParser, default_net: str = "socket") -> None:
    """The network options ``run``, ``describe`` and ``exec`` share."""
    p.add_argument(
        "--grace",
        metavar="S",
        type=float,
        default=DEFAULT_GRACE,
        help="on SIGINT/SIGTERM, seconds live connections get to end before they are "
        f"aborted (default {DEFAULT_GRACE:g})",
    )
    p.add_argument(
        "--clock-start",
        metavar="WHEN",
        help="--sim: where CLOCK starts, seconds since 1970 or an ISO date "
        "(default 2000-01-01T00:00:00Z)",
    )
    p.add_argument(
        "--net",
        metavar="socket|vnet|tap[:NAME]|vxlan:SPEC|packet:VETH",
        default=default_net,
        help="STACKV4 backend: host sockets (default), the virtual switch, a TAP device, a "
        "VXLAN segment, vxlan:VNI@ADDR[:PORT],REMOTE[:PORT]... (see docs/vxlan.md), or an "
        "existing interface (a veth end) through a ring-mapped packet socket",
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
        metavar="[udp:]HOSTPORT:PORT",
        action="append",
        default=[],
        help="accept TCP (or with udp: datagrams) on 127.0.0.1:HOSTPORT and carry it to the "
        "app's PORT through the direct stack (repeatable)",
    )
    p.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a setting: start()'s parameter NAME (str, int, float, bool or Path) (repeatable)",
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
        "--mac",
        metavar="MAC",
        help="the direct stack's MAC address (default on a TAP: one derived from the host "
        "and the device's name, the same on every run, so SLAAC gives the same IPv6 address)",
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


def dns_server(text: str) -> str:
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
        clock_start=None if args.clock_start is None else parse_clock_start(args.clock_start),
        net=args.net,
        ip=args.ip,
        gateway=args.gateway,
        forward=tuple(parse_forward(f) for f in args.forward),
        pcap=args.pcap,
        mac=args.mac,
        dhcp=args.dhcp,
        ip6=tuple(args.ip6),
        offload=args.offload,
        settings=tuple(parse_setting(s) for s in args.set),
        dns=tuple(dns_server(a) for a in args.dns),
        grace=args.grace,
        tls=None if args.tls is None else parse_tls(args.tls),
    )
    if args.read_only and args.block is None:
        raise OptionError("--read-only needs --block FILE")
    opts.check()
    return opts


def _warn_unused(app: App, opts: Options) -> None:
    for line in unused_flags(app, opts):
        print(f"miragekit: warning: {line}", file=sys.stderr, flush=True)


def _fail(msg: str) -> int:
    print(f"miragekit: {msg}", file=sys.stderr)
    return 2


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


YOUNG_THRESHOLD = 10_000
"""Net allocations of container objects between two young collections while an app runs
(Python's default: 700). A server's objects mostly die by reference counting: at 700 a
connection server ran a young collection every ~230 connections, and the collections of
20,000 connections found 866 objects to free (docs/performance.md)."""


def _freeze_start_up() -> None:
    """What start-up left alive (modules, classes, functions, the devices) stays alive
    for the whole run: moved out of the collector's reach (after one last collection, so
    no garbage is kept), a full collection no longer walks it again. Objects that become
    garbage later are still freed by reference counting; only a cycle among them waits
    for the ``gc.unfreeze()`` at the end of the run. Young collections come every
    :data:`YOUNG_THRESHOLD` allocations instead of every 700, until the run ends."""
    gc.collect()
    gc.freeze()
    _saved_threshold[:] = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, *_saved_threshold[1:])


_saved_threshold: list[int] = []
"""The collector's thresholds before the run (``gc.set_threshold`` takes them back)."""


def _thaw() -> None:
    """Undo :func:`_freeze_start_up` (a caller in the same process, a test, collects as
    before)."""
    gc.unfreeze()
    if _saved_threshold:
        gc.set_threshold(*_saved_threshold)
        _saved_threshold.clear()


def _run(args: argparse.Namespace) -> int:
    # Until the runner's own handlers are in place (and in simulated time, where the loop
    # has none), SIGTERM stops like SIGINT: one exit status for a stop, whatever the phase.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        opts = _options(args)
        app = load_app(args.app)
        _warn_unused(app, opts)
        if opts.sim:
            from .. import sim

            start = sim.CLOCK_START if opts.clock_start is None else opts.clock_start
            # An app may wait on the console or a real device: no deadlock detection.
            return sim.run(
                run_app(app, opts), seed=opts.seed or 0, clock_start=start, idle_timeout=None
            )
        return asyncio.run(run_app(app, opts, started=_freeze_start_up))
    except KeyboardInterrupt:
        return 0  # stopped by SIGINT/SIGTERM before or after the runner's own handlers
    except (OptionError, AppError, LinkError) as e:
        return _fail(str(e))
    except OSError as e:  # e.g. a port in use or privileged, raised while the app starts
        print(f"miragekit: {args.app}: {e}", file=sys.stderr)
        return 1
    finally:
        _thaw()


def _describe(args: argparse.Namespace) -> int:
    try:
        opts = _options(args)
        app = load_app(args.app)
        _warn_unused(app, opts)
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
