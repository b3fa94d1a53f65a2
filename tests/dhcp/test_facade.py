"""The public names of the DHCP pieces, and that the sans-I/O package stays sans-I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import miragekit.dhcp as dhcp
import miragekit.net as net
import miragekit.wire as wire


def test_public_names() -> None:
    for name in (
        "DhcpClient",
        "DhcpClientConfig",
        "DhcpClientCounters",
        "State",
        "Lease",
        "Transmit",
        "ArpProbe",
        "Bound",
        "Renewed",
        "Expired",
        "Nak",
        "Declined",
        "Released",
        "DhcpServer",
        "DhcpServerConfig",
        "ServerLease",
        "ServerReply",
    ):
        assert hasattr(dhcp, name), name
    for name in ("DhcpClientDriver", "DhcpServerDriver", "dhcp_configure"):
        assert hasattr(net, name), name
    for name in ("DhcpRepr", "DhcpPacket", "DhcpOp", "DhcpMessageType"):
        assert hasattr(wire, name), name


def test_no_asyncio_or_clock_in_the_protocol_code() -> None:
    files = [*Path(dhcp.__file__).parent.glob("*.py"), Path(wire.dhcp.__file__)]
    for f in files:
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("asyncio", "time", "socket") for n in names), f
