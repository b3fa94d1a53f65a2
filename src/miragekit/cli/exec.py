"""``miragekit exec [NET OPTIONS] -- script.py ARGS`` (or ``-- -m MODULE ARGS``): run an
unmodified asyncio program with its network calls going through miragekit's stack."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..runner import OptionError, Options
from .run import add_net_options, dns_server


def _exec(args: argparse.Namespace) -> int:
    cmd = list(args.program)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    try:
        if args.forward:
            raise OptionError("--forward is not available with exec")
        opts = Options(
            net=args.net,
            ip=args.ip,
            gateway=args.gateway,
            pcap=args.pcap,
            dhcp=args.dhcp,
            ip6=tuple(args.ip6),
            offload=args.offload,
            dns=tuple(dns_server(a) for a in args.dns),
        )
        opts.check()
        if not opts.direct:
            raise OptionError(
                f"--net {opts.net}: exec needs miragekit's own stack (tap[:NAME], vnet or "
                "vxlan:SPEC); the host's sockets need no exec"
            )
        if not cmd:
            raise OptionError("nothing to run: give -- script.py ARGS or -- -m MODULE ARGS")
    except OptionError as e:
        print(f"miragekit: {e}", file=sys.stderr)
        return 2
    from ..netloop.exec import NoProgram, install, run_program

    install(opts)
    try:
        return run_program(cmd)
    except NoProgram as e:
        print(f"miragekit: {e}", file=sys.stderr)
        return 2


def register(sub: Any) -> None:
    p = sub.add_parser(
        "exec",
        help="run an unmodified asyncio program on miragekit's stack",
        description="Run a Python program (-- script.py ARGS, or -- -m MODULE ARGS) with "
        "every asyncio event loop it creates routed through miragekit's TCP/IP stack.",
    )
    add_net_options(p, default_net="tap")
    p.add_argument(
        "program", nargs=argparse.REMAINDER, help="-- script.py ARGS | -- -m MODULE ARGS"
    )
    p.set_defaults(func=_exec)
