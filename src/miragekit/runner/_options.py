"""The runner's options, checked once so misuse gives one clear line."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..macaddr import MacAddr

NETS = ("socket", "vnet", "tap", "vxlan", "packet")

#: The direct stack's address when ``--ip`` is not given.
DEFAULT_DIRECT_IP = "10.0.0.2/24"

#: The TAP device ``--net tap`` uses without ``:NAME`` (Mirage's convention).
DEFAULT_TAP = "tap0"

#: How long, on SIGINT/SIGTERM, live connections may take to end before they are aborted.
DEFAULT_GRACE = 3.0

_IFNAMSIZ = 16


class OptionError(Exception):
    """A command-line option is misused; the message names it."""


@dataclass(frozen=True)
class Forward:
    """``--forward [tcp:|udp:]HOSTPORT:PORT``: 127.0.0.1:HOSTPORT on the host to the app's
    PORT, for TCP connections (the default) or UDP datagrams."""

    host_port: int
    port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        return f"{'udp:' if self.proto == 'udp' else ''}{self.host_port}:{self.port}"


def parse_tls(text: str) -> tuple[Path, Path]:
    """``--tls CERT,KEY``: the certificate (chain) file and its private key file, PEM."""
    cert, sep, key = text.partition(",")
    if not sep or not cert or not key or "," in key:
        raise OptionError(f"--tls {text}: use CERT,KEY (two PEM files: certificate, key)")
    return Path(cert), Path(key)


def parse_clock_start(text: str) -> float:
    """``--clock-start``: seconds since 1970 UTC, or an ISO 8601 date/time (UTC if no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise OptionError(
            f"--clock-start {text}: use seconds since 1970 or a date, e.g. 2024-05-01T12:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def parse_setting(text: str) -> tuple[str, str]:
    """``--set NAME=VALUE`` -> (NAME, VALUE)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise OptionError(f"--set {text}: use NAME=VALUE, NAME a parameter of start()")
    return name, value


def parse_forward(text: str) -> Forward:
    proto, rest = "tcp", text
    for p in ("tcp", "udp"):
        if text.startswith(p + ":"):
            proto, rest = p, text[len(p) + 1 :]
    host, sep, port = rest.partition(":")
    try:
        if not sep:
            raise ValueError
        f = Forward(int(host), int(port), proto)
    except ValueError:
        raise OptionError(
            f"--forward {text}: use [tcp:|udp:]HOSTPORT:PORT, e.g. 8080:80 or udp:5353:53"
        ) from None
    if not 0 <= f.host_port <= 65535 or not 1 <= f.port <= 65535:
        raise OptionError(f"--forward {text}: ports are 1 to 65535 (HOSTPORT 0: any free port)")
    return f


@dataclass(frozen=True)
class Options:
    block: Path | None = None
    read_only: bool = False
    block_size: int = 32 * 1024 * 1024
    kv: Path | None = None
    seed: int | None = None
    sim: bool = False
    clock_start: float | None = None  # --clock-start: the simulated CLOCK's start
    net: str = "socket"
    ip: str | None = None
    gateway: str | None = None
    forward: tuple[Forward, ...] = ()
    pcap: Path | None = None
    mac: str | None = None
    dhcp: bool = False
    ip6: tuple[str, ...] = ()  # --ip6 CIDR|slaac (repeatable)
    offload: bool = False
    settings: tuple[tuple[str, str], ...] = ()  # --set NAME=VALUE, in order
    dns: tuple[str, ...] = ()  # --dns IP (repeatable)
    grace: float = DEFAULT_GRACE  # --grace S: how long a stop waits for live connections
    tls: tuple[Path, Path] | None = None  # --tls CERT,KEY: the app's TLS server context

    @property
    def net_kind(self) -> str:
        """``socket``, ``vnet``, ``tap`` or ``vxlan`` (without the device's name or spec)."""
        return self.net.partition(":")[0]

    @property
    def tap_name(self) -> str:
        return self.net.partition(":")[2] or DEFAULT_TAP

    @property
    def direct(self) -> bool:
        """Whether the STACKV4 is miragekit's own (on the virtual switch or a TAP)."""
        return self.net_kind in ("vnet", "tap", "vxlan", "packet")

    def interface(self) -> ipaddress.IPv4Interface:
        """The direct stack's address and network."""
        return ipaddress.IPv4Interface(self.ip or DEFAULT_DIRECT_IP)

    def ipv6_config(self) -> Any:
        """The direct stack's ``IPv6Config`` for ``--ip6`` (None without it): static
        addresses from the CIDRs, SLAAC if ``slaac`` was given."""
        if not self.ip6:
            return None
        from ..stack import IPv6Config

        cidrs = [c for c in self.ip6 if c != "slaac"]
        return IPv6Config(cidrs=cidrs, slaac="slaac" in self.ip6)

    def host_side(self) -> ipaddress.IPv4Address:
        """The address the host's side of the virtual switch takes: the network's first
        host address that is not the application's."""
        iface = self.interface()
        for h in iface.network.hosts():
            if h != iface.ip:
                return h
        raise OptionError(f"--ip {iface}: the network has no room for the host's side")

    def check(self) -> None:
        if self.block is not None and self.block.exists() and self.block.is_dir():
            raise OptionError(f"--block {self.block}: is a directory, not a file or device")
        if self.block is not None and self.read_only and not self.block.exists():
            raise OptionError(f"--block {self.block}: no such file (and --read-only was given)")
        if self.kv is not None:
            if not self.kv.exists():
                raise OptionError(f"--kv {self.kv}: no such directory, tar archive or FAT image")
            if not self.kv.is_dir() and not _looks_like_tar(self.kv) and not is_fat(self.kv):
                raise OptionError(
                    f"--kv {self.kv}: neither a directory, a tar archive nor a FAT image"
                )
        if self.seed is not None and self.seed < 0:
            raise OptionError(f"--seed {self.seed}: must be 0 or more")
        if not 0 <= self.grace <= 3600:
            raise OptionError(f"--grace {self.grace:g}: seconds from 0 to 3600")
        if self.block_size <= 0 or self.block_size % 512:
            raise OptionError(f"--block-size {self.block_size}: must be a positive multiple of 512")
        self._check_net()
        self.tls_context()

    def tls_context(self) -> Any:
        """The ``ssl.SSLContext`` (server side) of ``--tls CERT,KEY``, None without it."""
        if self.tls is None:
            return None
        from ..tls import server_context

        try:
            return server_context(*self.tls)
        except ValueError as e:
            raise OptionError(f"--tls: {e}") from None

    def _check_net(self) -> None:
        kind, sep, name = self.net.partition(":")
        if kind not in NETS or (sep and kind not in ("tap", "vxlan", "packet")):
            raise OptionError(
                f"--net {self.net}: use one of socket, vnet, tap, tap:NAME, "
                "vxlan:VNI@ADDR[:PORT],REMOTE[:PORT]..., packet:VETH"
            )
        if kind == "packet" and not name:
            raise OptionError(f"--net {self.net}: the interface's name is missing (packet:VETH)")
        if kind == "packet" and self.forward:
            raise OptionError("--forward works with --net vnet or tap, not over a packet socket")
        if kind == "vxlan":
            from ..link import parse_vxlan_spec

            try:
                parse_vxlan_spec(self.net)
            except ValueError as e:
                raise OptionError(f"--net {self.net}: {e}") from None
            if self.forward:
                raise OptionError("--forward works with --net vnet or tap, not over VXLAN")
        if self.dhcp:
            if not self.direct:
                raise OptionError("--dhcp configures the direct stack (--net vnet, tap or vxlan)")
            if self.ip is not None or self.gateway is not None:
                raise OptionError(
                    "--dhcp takes the address and gateway from the lease: drop --ip/--gateway"
                )
            if self.forward:
                raise OptionError(
                    "--forward needs the app's address in advance: use --ip, not --dhcp"
                )
        if kind == "tap" and sep and not name:
            raise OptionError(f"--net {self.net}: the TAP device's name is missing (tap:NAME)")
        if kind in ("tap", "packet") and (
            len(name.encode()) >= _IFNAMSIZ or "/" in name or " " in name
        ):
            raise OptionError(
                f"--net {self.net}: not an interface name (at most {_IFNAMSIZ - 1} bytes)"
            )
        iface = None
        if self.ip is not None:
            try:
                iface = ipaddress.IPv4Interface(self.ip)
            except ValueError:
                raise OptionError(
                    f"--ip {self.ip}: not an IPv4 address or CIDR (e.g. 10.0.0.2/24)"
                ) from None
            if self.direct and "/" not in self.ip:
                raise OptionError(
                    f"--ip {self.ip}: give the prefix length (e.g. {self.ip}/24); without "
                    "one the stack would have no neighbours to reach"
                )
            if (
                self.direct
                and iface.network.prefixlen < 31
                and (iface.ip in (iface.network.network_address, iface.network.broadcast_address))
            ):
                raise OptionError(f"--ip {self.ip}: the network's or broadcast address")
        if self.gateway is not None:
            if not self.direct:
                raise OptionError("--gateway is for the direct stack (--net vnet or tap)")
            try:
                gw = ipaddress.IPv4Address(self.gateway)
            except ValueError:
                raise OptionError(f"--gateway {self.gateway}: not an IPv4 address") from None
            net = self.interface().network
            if gw not in net:
                raise OptionError(f"--gateway {self.gateway}: not in the stack's network {net}")
        if self.pcap is not None:
            if not self.direct:
                raise OptionError(
                    "--pcap records the frames of the direct stack (--net vnet, tap or vxlan); "
                    "--net socket has none"
                )
            if self.pcap.is_dir():
                raise OptionError(f"--pcap {self.pcap}: is a directory")
            if not self.pcap.parent.is_dir():
                raise OptionError(f"--pcap {self.pcap}: no such directory {self.pcap.parent}")
        self._check_ip6()
        if self.offload and kind != "tap":
            raise OptionError(
                "--offload is TAP checksum and segmentation offload: it needs --net tap[:NAME]"
            )
        if self.mac is not None:
            if not self.direct:
                raise OptionError("--mac sets the direct stack's MAC (--net vnet, tap or vxlan)")
            try:
                mac = MacAddr(self.mac)
            except ValueError:
                raise OptionError(
                    f"--mac {self.mac}: not a MAC address (aa:bb:cc:dd:ee:ff)"
                ) from None
            if mac.is_multicast:
                raise OptionError(f"--mac {self.mac}: a multicast address cannot be a host's")
        if self.offload and self.pcap is not None:
            raise OptionError("--offload with --pcap: the recorder takes plain frames only")
        if self.clock_start is not None and not self.sim:
            raise OptionError("--clock-start sets the simulated clock: it needs --sim")
        if self.sim and kind in ("tap", "packet"):
            raise OptionError("--sim cannot drive a TAP device (real time); use --net vnet")
        if self.forward:
            if not self.direct:
                raise OptionError(
                    "--forward is for the direct stack (--net vnet or tap); with --net socket "
                    "the application listens on the host already"
                )
            if self.sim:
                raise OptionError("--forward carries real connections: it cannot run with --sim")
            seen: set[tuple[str, int]] = set()
            for f in self.forward:
                if f.host_port and (f.proto, f.host_port) in seen:
                    raise OptionError(f"--forward {f}: host port {f.host_port} given twice")
                seen.add((f.proto, f.host_port))
            if kind == "vnet":
                self.host_side()

    def _check_ip6(self) -> None:
        if self.ip6 and not self.direct:
            raise OptionError(
                "--ip6 is for the direct stack (--net vnet, tap or vxlan); with --net socket "
                "the host's addresses are used"
            )
        seen: set[ipaddress.IPv6Address] = set()
        for text in self.ip6:
            if text == "slaac":
                continue
            try:
                iface = ipaddress.IPv6Interface(text)
            except ValueError:
                raise OptionError(
                    f"--ip6 {text}: not an IPv6 CIDR (e.g. fd00::2/64) or 'slaac'"
                ) from None
            if "/" not in text:
                raise OptionError(f"--ip6 {text}: give the prefix length (e.g. {text}/64)")
            ip = iface.ip
            if ip.is_link_local:
                raise OptionError(
                    f"--ip6 {text}: the link-local address is always on (from the MAC); "
                    "give a global or unique-local CIDR"
                )
            if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
                raise OptionError(f"--ip6 {text}: not a unicast address for an interface")
            if ip in seen:
                raise OptionError(f"--ip6 {text}: given twice")
            seen.add(ip)


def _looks_like_tar(path: Path) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def is_fat(path: Path) -> bool:
    """Whether ``path`` starts with a FAT boot sector (``--kv`` then serves the volume)."""
    from ..fs import BootSector, NotFat

    try:
        with path.open("rb") as f:
            BootSector.parse(f.read(512))
    except (OSError, NotFat):
        return False
    return True


def parse_size(text: str) -> int:
    """``64M``, ``1G``, ``4096`` -> bytes (binary multiples)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if t and t[-1] in units:
        mult = units[t[-1]]
        t = t[:-1]
    try:
        n = int(t)
    except ValueError:
        raise OptionError(f"not a size: {text!r} (use e.g. 4096, 64M, 1G)") from None
    if n < 0:
        raise OptionError(f"not a size: {text!r} (negative)")
    return n * mult
