"""The MirageOS V1 device signatures as typed Python protocols.

One :class:`typing.Protocol` per module type of ``spec/mirage-v1-signatures.txt``, mapped
as ``docs/design.md`` explains:

* ``'a io`` is a coroutine; results are :class:`~miragekit.result.Ok` /
  :class:`~miragekit.result.Error` / :data:`~miragekit.result.EOF` values.
* A module's ``t`` is the object implementing the protocol, and its ``val f : t -> ...``
  is the method ``f(self, ...)``. Labelled OCaml arguments (``~dst``) are keyword-only.
* ``connect : id -> ...`` is an async classmethod ``connect(id, ...)``; an implementation
  may take further keyword arguments with defaults.
* A FLOW's ``flow`` is an object with ``read``/``write``/``writev``/``close`` methods.
  For TCP the flow type is :class:`TCPFlow` (it also carries ``get_dest`` and the
  ``*_nodelay`` writes), and the TCP device keeps ``create_connection`` and ``input``.
* Records (``tm``, ``info``, ``stats``, ``stat``) are dataclasses with the seed's field
  names.

Every concrete device states its conformance statically, e.g.
``_check: type[v1.Block] = FileBlock``, so drift from the seed is a type error.
"""

from __future__ import annotations

import builtins
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, Self, TypeVar

from .macaddr import MacAddr
from .result import (
    BlockError,
    ConsoleError,
    EntropyError,
    Eof,
    Error,
    EthifError,
    FSError,
    IPError,
    KVError,
    NetworkError,
    Ok,
    StackError,
    TCPError,
    UDPError,
)

# --- buffers ---------------------------------------------------------------------------

Buffer = bytes | bytearray | memoryview
"""What a signature accepts as input ``buffer``: any bytes-like object."""

Buffers = Sequence[Buffer]
"""A ``buffer list`` on input."""

PageAlignedBuffer = memoryview
"""A view over page-aligned memory from :mod:`miragekit.io_page`."""

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPPrefix = ipaddress.IPv4Network | ipaddress.IPv6Network

A = TypeVar("A", ipaddress.IPv4Address, ipaddress.IPv6Address)
P = TypeVar("P", ipaddress.IPv4Network, ipaddress.IPv6Network)
A_contra = TypeVar("A_contra", ipaddress.IPv4Address, ipaddress.IPv6Address, contravariant=True)
A_co = TypeVar("A_co", ipaddress.IPv4Address, ipaddress.IPv6Address, covariant=True)
E_co = TypeVar("E_co", covariant=True)

# --- records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tm:
    """CLOCK.tm: a broken-down UTC time."""

    tm_sec: int  # 0..60
    tm_min: int  # 0..59
    tm_hour: int  # 0..23
    tm_mday: int  # 1..31
    tm_mon: int  # 0..11
    tm_year: int  # year - 1900
    tm_wday: int  # Sunday is 0
    tm_yday: int  # 0..365
    tm_isdst: bool


@dataclass(frozen=True, slots=True)
class Info:
    """BLOCK.info: what a block device is."""

    read_write: bool
    sector_size: int
    size_sectors: int


@dataclass(slots=True)
class Stats:
    """NETWORK.stats: frame counters (mutable, as in the seed)."""

    rx_bytes: int = 0
    rx_pkts: int = 0
    tx_bytes: int = 0
    tx_pkts: int = 0


@dataclass(frozen=True, slots=True)
class Stat:
    """FS.stat: what a path is."""

    filename: str
    read_only: bool
    directory: bool
    size: int


# --- DEVICE ----------------------------------------------------------------------------


class Device(Protocol):
    """DEVICE: connect and disconnect any device."""

    def id(self) -> Any:
        """The identifier this device was connected with."""
        ...

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[Any]:
        """Connect to the device identified by ``id``."""
        ...

    async def disconnect(self) -> None:
        """Disconnect; may take time, never fails."""
        ...


# --- TIME, RANDOM, ENTROPY, CLOCK ------------------------------------------------------


class Time(Protocol):
    """TIME: sleeping for cooperative tasks."""

    async def sleep(self, seconds: float) -> None: ...


class Random(Protocol):
    """RANDOM: a (seedable) pseudo-random generator."""

    def self_init(self) -> None:
        """Reseed from the operating system."""
        ...

    def int(self, bound: builtins.int) -> builtins.int:
        """A value in ``[0, bound)``; requires ``0 < bound < 2**30`` (else ``ValueError``)."""
        ...

    def int32(self, bound: builtins.int) -> builtins.int:
        """A value in ``[0, bound)``; requires ``0 < bound < 2**31`` (else ``ValueError``)."""
        ...


EntropyHandler = Callable[[int, memoryview], None]
"""ENTROPY.handler: ``handler(source, buffer)``; must return quickly."""


class Entropy(Device, Protocol):
    """ENTROPY: environmentally derived entropy, pushed to one registered handler."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[EntropyError]: ...

    async def handler(self, h: EntropyHandler) -> None:
        """Register the single global handler that receives entropy."""
        ...


class Clock(Protocol):
    """CLOCK: wall-clock time."""

    def time(self) -> float:
        """Seconds since 1970-01-01 00:00:00 UTC."""
        ...

    def gmtime(self, t: float) -> Tm:
        """``t`` (as from :meth:`time`) broken down in UTC."""
        ...


# --- FLOW and CONSOLE ------------------------------------------------------------------


class Flow(Protocol[E_co]):
    """FLOW: a connection between endpoints; ``E_co`` is the error type."""

    async def read(self) -> Ok[memoryview] | Eof | Error[E_co]:
        """Block until data arrives (``Ok``), the flow ends (``EOF``) or fails."""
        ...

    async def write(self, buf: Buffer) -> Ok[None] | Eof | Error[E_co]:
        """Block until ``buf`` is in the send queue; it must not be reused."""
        ...

    async def writev(self, bufs: Buffers) -> Ok[None] | Eof | Error[E_co]:
        """Block until all ``bufs`` are in the send queue."""
        ...

    async def close(self) -> None:
        """Signal the end after the data already queued, without waiting for the peer.

        Every read or write waiting on the flow returns ``EOF`` at once, and so do later
        ones. TCP flows also have ``abort()`` (a reset: RST, queued data dropped). On every
        backend, once a peer's reset is known, reads and writes give ``Error``, never
        ``EOF`` (which means an orderly end).
        """
        ...


class Console(Device, Flow[ConsoleError], Protocol):
    """CONSOLE: a text console; it is its own FLOW."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[ConsoleError]: ...

    def log(self, s: str) -> None:
        """Write as much of ``s`` as one write takes, then ``"\\r\\n"``."""
        ...

    async def log_s(self, s: str) -> None:
        """Write ``s + "\\r\\n"``."""
        ...


# --- BLOCK -----------------------------------------------------------------------------


class Block(Device, Protocol):
    """BLOCK: a sector-addressed device."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[BlockError]: ...

    async def get_info(self) -> Info: ...

    async def read(
        self, sector_start: int, buffers: Sequence[bytearray | memoryview]
    ) -> Ok[None] | Error[BlockError]:
        """Fill ``buffers`` (each a whole number of sectors, writable) in place."""
        ...

    async def write(self, sector_start: int, buffers: Buffers) -> Ok[None] | Error[BlockError]:
        """Write ``buffers``; completes when the data is durable."""
        ...


# --- NETWORK and ETHIF -----------------------------------------------------------------

FrameCallback = Callable[[memoryview], Awaitable[None]]


class Network(Device, Protocol):
    """NETWORK: a device that moves Ethernet frames."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[NetworkError]: ...

    async def write(self, buf: Buffer) -> None:
        """Send one frame."""
        ...

    async def writev(self, bufs: Buffers) -> None:
        """Send the concatenation of ``bufs`` as one frame."""
        ...

    async def listen(self, fn: FrameCallback) -> None:
        """Call ``fn`` with every received frame until the device is disconnected."""
        ...

    def mac(self) -> MacAddr: ...

    def get_stats_counters(self) -> Stats: ...

    def reset_stats_counters(self) -> None: ...


class Ethif(Device, Protocol):
    """ETHIF: Ethernet framing over a NETWORK, dispatching by ethertype."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[EthifError]: ...

    async def write(self, buf: Buffer) -> None: ...

    async def writev(self, bufs: Buffers) -> None: ...

    def mac(self) -> MacAddr: ...

    async def input(
        self,
        buf: memoryview,
        *,
        arpv4: FrameCallback,
        ipv4: FrameCallback,
        ipv6: FrameCallback,
    ) -> None:
        """Pass one received frame to the handler for its ethertype."""
        ...


# --- IP, IPV4, IPV6 --------------------------------------------------------------------


class IPCallback(Protocol[A_contra]):
    """IP.callback: ``callback(src, dst, payload)`` for one received packet."""

    def __call__(self, src: A_contra, dst: A_contra, buf: memoryview, /) -> Awaitable[None]: ...


class IPDefaultCallback(Protocol[A_contra]):
    """The ``default`` handler of IP.input: ``default(proto, src, dst, payload)``."""

    def __call__(
        self, proto: int, src: A_contra, dst: A_contra, buf: memoryview, /
    ) -> Awaitable[None]: ...


class IP(Device, Protocol[A, P]):
    """IP: an IP layer over an ETHIF; ``A``/``P`` are the address and prefix types."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[IPError]: ...

    async def input(
        self,
        buf: memoryview,
        *,
        tcp: IPCallback[A],
        udp: IPCallback[A],
        default: IPDefaultCallback[A],
    ) -> None:
        """Demultiplex one received IP packet by protocol."""
        ...

    def allocate_frame(self, *, dst: A, proto: Literal["TCP", "UDP"]) -> tuple[memoryview, int]:
        """A frame whose first ``len`` bytes are the link and IP headers towards ``dst``."""
        ...

    async def write(self, frame: Buffer, buf: Buffer) -> None:
        """Send ``frame`` (from :meth:`allocate_frame`) followed by ``buf``."""
        ...

    async def writev(self, frame: Buffer, bufs: Buffers) -> None: ...

    def checksum(self, frame: Buffer, bufs: Buffers) -> int:
        """The transport checksum of ``bufs`` with the pseudo-header taken from ``frame``."""
        ...

    def get_source(self, *, dst: A) -> A: ...

    async def set_ip(self, ip: A) -> None: ...

    def get_ip(self) -> list[A]: ...

    async def set_ip_netmask(self, prefix: P) -> None: ...

    def get_ip_netmasks(self) -> list[P]: ...

    async def set_ip_gateways(self, gateways: list[A]) -> None: ...

    def get_ip_gateways(self) -> list[A]: ...


class IPv4(IP[ipaddress.IPv4Address, ipaddress.IPv4Network], Protocol):
    """IPV4: IP, plus the ARP input."""

    async def input_arpv4(self, buf: memoryview) -> None: ...


class IPv6(IP[ipaddress.IPv6Address, ipaddress.IPv6Network], Protocol):
    """IPV6: IP over IPv6."""


# --- UDP and TCP -----------------------------------------------------------------------


class UDPCallback(Protocol[A_contra]):
    """UDP.callback: ``callback(src, dst, src_port, payload)``."""

    def __call__(
        self, src: A_contra, dst: A_contra, src_port: int, buf: memoryview, /
    ) -> Awaitable[None]: ...


class UDP(Device, Protocol[A]):
    """UDP: datagrams over an IP layer."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[UDPError]: ...

    async def input(
        self,
        src: A,
        dst: A,
        buf: memoryview,
        *,
        listeners: Callable[[int], UDPCallback[A] | None],
    ) -> None:
        """The IP input continuation: demultiplex one datagram by destination port."""
        ...

    async def write(
        self,
        buf: Buffer,
        *,
        dest_ip: A,
        dest_port: int,
        source_port: int | None = None,
    ) -> None:
        """Send one datagram (from an ephemeral port unless ``source_port`` is given)."""
        ...


class TCPFlow(Flow[TCPError], Protocol[A_co]):
    """TCP.flow: one TCP connection, a FLOW with the TCP extras."""

    def get_dest(self) -> tuple[A_co, int]:
        """The remote address and port."""
        ...

    async def write_nodelay(self, buf: Buffer) -> None:
        """Send bypassing Nagle; completes when the bytes have left the stack."""
        ...

    async def writev_nodelay(self, bufs: Buffers) -> None: ...


TCPCallback = Callable[[Any], Awaitable[None]]
"""TCP.callback: called with each new :class:`TCPFlow`."""


class TCP(Device, Protocol[A]):
    """TCP: reliable streams over an IP layer."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[TCPError]: ...

    async def create_connection(self, dest: tuple[A, int]) -> Ok[TCPFlow[A]] | Error[TCPError]:
        """Open a connection to ``(addr, port)``."""
        ...

    async def input(
        self,
        src: A,
        dst: A,
        buf: memoryview,
        *,
        listeners: Callable[[int], TCPCallback | None],
    ) -> None:
        """The IP input continuation; a port with no listener is refused with RST."""
        ...


# --- STACKV4 ---------------------------------------------------------------------------

NetifT = TypeVar("NetifT", bound=Network)


@dataclass(frozen=True, slots=True)
class StackConfig(Generic[NetifT]):
    """STACKV4.config: what a stack is built from."""

    name: str
    console: Console | None
    netif: NetifT
    mode: Any


class StackV4(Device, Protocol):
    """STACKV4: a whole TCP/IPv4 stack."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[StackError]: ...

    def udpv4(self) -> UDP[ipaddress.IPv4Address]: ...

    def tcpv4(self) -> TCP[ipaddress.IPv4Address]: ...

    def ipv4(self) -> IPv4: ...

    def listen_udpv4(self, *, port: int, callback: UDPCallback[ipaddress.IPv4Address]) -> None:
        """Bind ``callback`` to UDP ``port``, replacing any earlier binding."""
        ...

    def listen_tcpv4(self, *, port: int, callback: TCPCallback) -> None:
        """Bind ``callback`` to TCP ``port``, replacing any earlier binding."""
        ...

    async def listen(self) -> None:
        """Receive and demultiplex traffic until the stack is disconnected."""
        ...


# --- CHANNEL ---------------------------------------------------------------------------


class Channel(Protocol):
    """CHANNEL: a buffered byte stream over an unbuffered FLOW."""

    @classmethod
    def create(cls, flow: Flow[Any]) -> Self: ...

    def to_flow(self) -> Flow[Any]: ...

    async def read_char(self) -> bytes:
        """One byte (``EOFError`` at the end of the flow)."""
        ...

    async def read_until(self, ch: bytes) -> tuple[bool, memoryview]:
        """Data up to ``ch`` (consumed); ``found`` is False if the flow ended first."""
        ...

    async def read_some(self, len: int | None = None) -> memoryview:
        """Up to ``len`` buffered bytes (empty at the end of the flow)."""
        ...

    def read_stream(self, len: int | None = None) -> AsyncIterator[memoryview]: ...

    async def read_line(self) -> list[memoryview]:
        """One line without its LF (and a CR before it); at EOF, what is left."""
        ...

    def write_char(self, ch: bytes) -> None: ...

    def write_string(self, s: str | Buffer, off: int, len: int) -> None: ...

    def write_buffer(self, buf: Buffer) -> None: ...

    def write_line(self, s: str | Buffer) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


# --- FS and KV_RO ----------------------------------------------------------------------


class FS(Device, Protocol):
    """FS: a filesystem with directories."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[FSError]: ...

    async def read(
        self, path: str, offset: int, length: int
    ) -> Ok[list[memoryview]] | Error[FSError]:
        """Up to ``length`` bytes from ``offset``; fewer means the end of the file."""
        ...

    async def size(self, path: str) -> Ok[int] | Error[FSError]: ...

    async def format(self, size: int) -> Ok[None] | Error[FSError]:
        """Erase the device and create an empty filesystem of ``size`` bytes."""
        ...

    async def create(self, path: str) -> Ok[None] | Error[FSError]: ...

    async def mkdir(self, path: str) -> Ok[None] | Error[FSError]: ...

    async def destroy(self, path: str) -> Ok[None] | Error[FSError]:
        """Remove a file or an empty directory."""
        ...

    async def stat(self, path: str) -> Ok[Stat] | Error[FSError]: ...

    async def listdir(self, path: str) -> Ok[list[str]] | Error[FSError]: ...

    async def write(self, path: str, offset: int, data: Buffer) -> Ok[None] | Error[FSError]: ...


class KVRO(Device, Protocol):
    """KV_RO: a read-only key/value store."""

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[KVError]: ...

    async def read(
        self, key: str, offset: int, length: int
    ) -> Ok[list[memoryview]] | Error[KVError]:
        """Up to ``length`` bytes from ``offset``; fewer means the end of the value."""
        ...

    async def size(self, key: str) -> Ok[int] | Error[KVError]: ...


# --- IO_PAGE ---------------------------------------------------------------------------


class IOPage(Protocol):
    """IO_PAGE: page-aligned memory. The module :mod:`miragekit.io_page` implements it."""

    def get(self, n: int) -> memoryview: ...

    def get_order(self, i: int) -> memoryview: ...

    def pages(self, n: int) -> list[memoryview]: ...

    def pages_order(self, i: int) -> list[memoryview]: ...

    def length(self, t: memoryview) -> int: ...

    def to_cstruct(self, t: memoryview) -> memoryview: ...

    def to_string(self, t: memoryview) -> bytes: ...

    def to_pages(self, t: memoryview) -> list[memoryview]: ...

    def string_blit(
        self, src: Buffer | str, srcoff: int, dst: memoryview, dstoff: int, len: int
    ) -> None: ...

    def blit(self, t1: memoryview, t2: memoryview) -> None: ...

    def round_to_page_size(self, n: int) -> int: ...


#: The protocols, by the seed's module type name.
SIGNATURES: dict[str, type] = {
    "DEVICE": Device,
    "TIME": Time,
    "RANDOM": Random,
    "ENTROPY": Entropy,
    "CLOCK": Clock,
    "FLOW": Flow,
    "CONSOLE": Console,
    "BLOCK": Block,
    "NETWORK": Network,
    "ETHIF": Ethif,
    "IP": IP,
    "IPV4": IPv4,
    "IPV6": IPv6,
    "UDP": UDP,
    "TCP": TCP,
    "STACKV4": StackV4,
    "CHANNEL": Channel,
    "FS": FS,
    "IO_PAGE": IOPage,
    "KV_RO": KVRO,
}

#: Where a seed ``val`` lives on a Python object other than the protocol itself.
FLOW_TYPES: dict[str, type] = {"TCP": TCPFlow}

__all__ = [
    "FLOW_TYPES",
    "FS",
    "IP",
    "KVRO",
    "SIGNATURES",
    "TCP",
    "UDP",
    "Block",
    "Buffer",
    "Buffers",
    "Channel",
    "Clock",
    "Console",
    "Device",
    "Entropy",
    "EntropyHandler",
    "Ethif",
    "Flow",
    "FrameCallback",
    "IOPage",
    "IPAddr",
    "IPCallback",
    "IPDefaultCallback",
    "IPPrefix",
    "IPv4",
    "IPv6",
    "Info",
    "Network",
    "PageAlignedBuffer",
    "Random",
    "StackConfig",
    "StackV4",
    "Stat",
    "Stats",
    "TCPCallback",
    "TCPFlow",
    "Time",
    "Tm",
    "UDPCallback",
]
