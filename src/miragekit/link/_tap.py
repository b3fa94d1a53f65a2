"""A NETWORK backend on a Linux TAP device (``/dev/net/tun``).

Why this shape: at MTU 1500 the per-frame budget in Python is ~10 µs (docs/design.md), so
the fd is non-blocking, one ``add_reader`` wake-up reads a batch of frames into one
reusable buffer and hands each to a synchronous receiver (the :class:`FrameLink` fast
path); sends are direct ``os.write``/``os.writev`` calls, queued (bounded) only when the
device would block. The seed's async ``listen``/``write``/``writev`` sit on top.

With ``connect(..., vnet_hdr=True)`` the device carries a ``struct virtio_net_hdr``
before every frame, which reading strips and writing prepends (all zero). With
``offload=True`` (which implies it) the device is also an :class:`OffloadLink`: while a
receiver installed with ``set_receiver_meta`` listens, ``TUNSETOFFLOAD`` lets the kernel
hand us TCP segments of up to 64 KiB with the checksum left to do (``NEEDS_CSUM``), and
``send_offload`` writes such segments the other way; at MTU 1500 that moves ~45 times
fewer frames through Python.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import io
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Self

from ..macaddr import MacAddr
from ..result import Error, NetworkError, Ok, Unknown
from ..v1 import Buffer, Network
from ._fd import FdLink
from ._frame import (
    OFFLOAD_CSUM,
    OFFLOAD_TSO4,
    OFFLOAD_TSO6,
    FrameLink,
    FrameReceiver,
    MetaReceiver,
    OffloadLink,
)
from ._netns import in_netns

TUNSETIFF: Final = 0x400454CA
IFF_TAP: Final = 0x0002
IFF_NO_PI: Final = 0x1000
IFF_VNET_HDR: Final = 0x4000
SIOCGIFMTU: Final = 0x8921
IFNAMSIZ: Final = 16
VNET_HDR_LEN: Final = 10
"""``struct virtio_net_hdr`` without ``num_buffers`` (the kernel's default size)."""
TUNSETOFFLOAD: Final = 0x400454D0
TUN_F_CSUM: Final = 0x01
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04
VIRTIO_NET_HDR_F_NEEDS_CSUM: Final = 1
VIRTIO_NET_HDR_F_DATA_VALID: Final = 2
VIRTIO_NET_HDR_GSO_NONE: Final = 0
VIRTIO_NET_HDR_GSO_TCPV4: Final = 1
VIRTIO_NET_HDR_GSO_TCPV6: Final = 4
_GSO_TCP: Final = {4: VIRTIO_NET_HDR_GSO_TCPV4, 6: VIRTIO_NET_HDR_GSO_TCPV6}
_VNET = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset

_IFREQ_FLAGS = struct.Struct("16sH")
_IFREQ_MTU = struct.Struct("16si")

READ_BATCH: Final = 256
"""Frames read per wake-up at most, so one busy device cannot starve the loop."""


@dataclass(slots=True)
class TapCounters:
    """What :class:`~miragekit.v1.Stats` does not count: losses and errors."""

    rx_dropped: int = 0  # frames the async listen queue had no room for
    tx_queued: int = 0  # frames that waited for the device to become writable
    tx_dropped: int = 0  # frames dropped: queue full, device error or disconnected
    tx_errors: int = 0
    rx_gso: int = 0  # frames the kernel handed us as one GSO TCP segment
    rx_gso_bytes: int = 0
    rx_csum_needed: int = 0  # frames with NEEDS_CSUM (checksum left undone, data trusted)
    rx_csum_valid: int = 0  # frames with DATA_VALID
    tx_gso: int = 0  # TSO frames we wrote
    tx_gso_bytes: int = 0
    tx_csum_offload: int = 0  # frames whose checksum the kernel completed for us


def read_mtu(name: str) -> int | None:
    """The MTU of interface ``name`` in this network namespace, or None if it is not here."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFMTU, _IFREQ_MTU.pack(name.encode(), 0))
        except OSError:
            return None
    return int(_IFREQ_MTU.unpack(res)[1])


def _open_tap(name: str, flags: int) -> tuple[int, str, int]:
    """Open (creating if need be) TAP ``name``: (fd, the kernel's name, its MTU)."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"/dev/net/tun: {e.strerror}") from None
    try:
        res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ_FLAGS.pack(name.encode(), flags))
    except OSError as e:
        os.close(fd)
        raise OSError(e.errno, f"TUNSETIFF {name!r}: {e.strerror}") from None
    kname = _IFREQ_FLAGS.unpack(res)[0].rstrip(b"\0").decode()
    return fd, kname, read_mtu(kname) or 1500


class TapNetif(FdLink[bytes, TapCounters]):
    """One TAP device; ``mac()`` is *our* stack's MAC, not the kernel interface's."""

    def __init__(
        self,
        fd: int,
        name: str,
        *,
        mtu: int,
        mac: MacAddr,
        loop: asyncio.AbstractEventLoop,
        tx_queue_limit: int = 1024,
        rx_queue_limit: int = 1024,
    ) -> None:
        super().__init__(
            fd,
            loop=loop,
            mtu=mtu,
            mac=mac,
            counters=TapCounters(),
            rbuf_size=65536 + 64,
            tx_queue_limit=tx_queue_limit,
            rx_queue_limit=rx_queue_limit,
        )
        self._name = name
        self.vnet_hdr_len = 0
        self.offload_capable = False
        self._offload_on = False  # TUNSETOFFLOAD is in force
        self._meta = False  # the receiver takes (frame, flags)
        self._vnet_zero = b""
        self._meta_receiver: MetaReceiver | None = None
        self._batch_done: Callable[[], None] | None = None
        self._rfile = io.FileIO(fd, "rb", closefd=False)  # reads only; the fd is ours

    # --- DEVICE ------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        id: str,
        *,
        mac: MacAddr | str | None = None,
        mtu: int | None = None,
        vnet_hdr: bool = False,
        offload: bool = False,
        netns: str | None = None,
    ) -> Ok[Self] | Error[NetworkError]:
        """Create TAP device ``id`` or attach to an existing one of that name.

        ``mtu`` overrides the device's MTU (read with ``SIOCGIFMTU``) for our stack.
        ``offload`` (implies ``vnet_hdr``) offers checksum and segmentation offload
        (see :class:`~miragekit.link.OffloadLink`); the MTU stays what it is. ``netns``
        names the network namespace (``ip netns``) the device is created or found in; the
        fd works from here, and closing it removes a device that was not persistent.
        """
        vnet_hdr = vnet_hdr or offload
        if len(id.encode()) >= IFNAMSIZ:
            raise ValueError(f"id: interface name longer than {IFNAMSIZ - 1} bytes: {id!r}")
        loop = asyncio.get_running_loop()
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        try:
            if netns is None:
                fd, name, dev_mtu = _open_tap(id, flags)
            else:
                fd, name, dev_mtu = in_netns(netns, lambda: _open_tap(id, flags))
        except OSError as e:
            if e.filename is not None:  # in_netns could not open the namespace
                return Error(Unknown(f"network namespace {netns!r}: {e.strerror}"))
            where = f" (in network namespace {netns!r})" if netns is not None else ""
            return Error(Unknown(f"{e.strerror}{where}"))
        if isinstance(mac, str):
            mac = MacAddr(mac)
        dev = cls(
            fd,
            name,
            mtu=mtu if mtu is not None else dev_mtu,
            mac=mac or MacAddr.from_name(f"{socket.gethostname()} tap {name}"),
            loop=loop,
        )
        if vnet_hdr:
            dev._set_vnet_hdr_len(VNET_HDR_LEN)
        if offload:
            try:
                fcntl.ioctl(fd, TUNSETOFFLOAD, 0)  # on only while a meta receiver listens
            except OSError as e:
                os.close(fd)
                return Error(Unknown(f"TUNSETOFFLOAD {id!r}: {e.strerror}"))
            dev.offload_capable = True
        return Ok(dev)

    def id(self) -> str:
        return self._name

    def _close_fd(self) -> None:
        self._rfile.close()  # closefd=False: only the wrapper
        os.close(self._fd)

    def _set_vnet_hdr_len(self, n: int) -> None:
        self.vnet_hdr_len = n
        self._vnet_zero = bytes(n)

    # --- FrameLink fast path --------------------------------------------------------------

    @property
    def offloads(self) -> int:
        """``OFFLOAD_*`` bits this device offers (0 unless opened with ``offload=True``)."""
        if self.offload_capable and self._connected:
            return OFFLOAD_CSUM | OFFLOAD_TSO4 | OFFLOAD_TSO6
        return 0

    def _set_offload(self, on: bool) -> None:
        if on == self._offload_on or not self._connected or not self.offload_capable:
            return
        bits = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 if on else 0
        fcntl.ioctl(self._fd, TUNSETOFFLOAD, bits)
        self._offload_on = on

    def set_receiver_meta(self, fn: MetaReceiver | None) -> None:
        """Receive ``fn(frame, flags)``, with offloaded frames (GSO, NEEDS_CSUM) allowed."""
        if fn is not None and not self.offload_capable:
            raise ValueError("fn: this TAP device was not opened with offload=True")
        self._set_offload(fn is not None)
        self._meta = fn is not None
        self._receiver = None
        self._meta_receiver = fn
        self._watch(fn is not None)

    def set_receiver(self, fn: FrameReceiver | None) -> None:
        self._set_offload(False)
        self._meta = False
        self._receiver = fn
        self._meta_receiver = None
        self._watch(fn is not None)

    def set_batch_done(self, fn: Callable[[], None] | None) -> None:
        """Call ``fn`` after each batch of frames handed to the receiver (the device
        had no more, or the batch limit was reached): a stack sends the batch's output
        then, in this loop turn."""
        self._batch_done = fn

    def _on_readable(self) -> None:
        # The hook of the batch's start is called at its end, whatever happens in it (a
        # receiver that raises, the hook taken away): the stack's frames of the batch
        # count on it for their flush (``IPv4.batched``).
        done = self._batch_done
        if done is None:
            self._read_batch()
            return
        try:
            self._read_batch()
        finally:
            done()

    def _read_batch(self) -> None:
        view, st, rbuf = self._rview, self._stats, self._rbuf
        c, meta = self.counters, self._meta
        skip = self.vnet_hdr_len
        # FileIO's readinto: ~0.09 µs a call less than os.readv (no iovec list), and
        # None, not an exception, when the device has no more. One read is one frame.
        readinto = self._rfile.readinto
        pkts = nbytes = 0  # counted here, added to the stats once per batch
        try:
            for _ in range(READ_BATCH):
                # The receiver first: one taken away during the batch leaves the frames
                # that follow in the device, none read and dropped.
                fn = None if meta else self._receiver
                mfn = self._meta_receiver if meta else None
                if fn is None and mfn is None:
                    return
                try:
                    n = readinto(rbuf)
                except BlockingIOError:
                    return
                except OSError:
                    # The device went away (e.g. deleted with its namespace): stop reading.
                    self._watch(False)
                    return
                if n is None:
                    return
                pkts += 1
                nbytes += n - skip
                if fn is not None:
                    fn(view[skip:n])
                    continue
                flags = rbuf[0]
                if rbuf[1]:
                    c.rx_gso += 1
                    c.rx_gso_bytes += n - skip
                if flags:
                    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                        c.rx_csum_needed += 1
                    else:
                        c.rx_csum_valid += 1
                if mfn is not None:
                    mfn(view[skip:n], flags)
        finally:
            st.rx_pkts += pkts
            st.rx_bytes += nbytes

    def send(self, frame: Buffer) -> None:
        if not self._connected:
            self.counters.tx_dropped += 1
            return
        if self._vnet_zero:
            self.sendv((frame,))
            return
        if self._txq:
            self._enqueue(bytes(frame))
            return
        try:
            os.write(self._fd, frame)
        except BlockingIOError:
            self._enqueue(bytes(frame))
            return
        except OSError:
            self.counters.tx_errors += 1
            self.counters.tx_dropped += 1
            return
        self._stats.tx_pkts += 1
        self._stats.tx_bytes += len(frame)

    def send_frames(self, frames: Sequence[Buffer]) -> None:
        """:meth:`send` for each of ``frames``, in order: a TAP device takes one frame per
        system call, but the loop here is tighter than one :meth:`send` call each (a bulk
        sender's every segment goes this way)."""
        if not self._connected or self._vnet_zero or self._txq:
            for f in frames:
                self.send(f)
            return
        write, fd = os.write, self._fd
        nbytes = 0
        done = 0
        try:
            for f in frames:
                nbytes += write(fd, f)
                done += 1
        except BlockingIOError:
            for f in frames[done:]:
                self._enqueue(bytes(f))
        except OSError:
            self.counters.tx_errors += 1
            self.counters.tx_dropped += 1
            # The rest goes the usual way, one by one (each error counted there).
            for f in frames[done + 1 :]:
                self.send(f)
        self._stats.tx_pkts += done
        self._stats.tx_bytes += nbytes

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        if not self._connected:
            self.counters.tx_dropped += 1
            return
        self._writev((self._vnet_zero, *bufs) if self._vnet_zero else bufs)

    def _writev(self, bufs: Sequence[Buffer]) -> bool:
        """Write one frame (header included) now, or queue it behind those waiting;
        False after a device error (counted)."""
        if self._txq:
            self._enqueue(b"".join(bufs))
            return True
        try:
            n = os.writev(self._fd, bufs)
        except BlockingIOError:
            self._enqueue(b"".join(bufs))
            return True
        except OSError:
            self.counters.tx_errors += 1
            self.counters.tx_dropped += 1
            return False
        self._stats.tx_pkts += 1
        self._stats.tx_bytes += n - self.vnet_hdr_len
        return True

    def send_offload(
        self, bufs: Sequence[Buffer], *, csum_start: int, hdr_len: int, gso_size: int
    ) -> None:
        """One TCP frame whose checksum the kernel completes; TSO (over IPv4 or IPv6, as
        the frame's IP version says) when ``gso_size`` > 0."""
        if not self._connected:
            self.counters.tx_dropped += 1
            return
        if not self.vnet_hdr_len:
            raise ValueError("send_offload: this TAP device has no virtio-net header")
        gso_type = VIRTIO_NET_HDR_GSO_NONE
        if gso_size:  # by the IP version after the 14-byte Ethernet header
            version = bufs[0][14] >> 4
            if version not in _GSO_TCP:
                raise ValueError(f"send_offload: TSO of an IP version {version} packet")
            gso_type = _GSO_TCP[version]
        hdr = _VNET.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, hdr_len, gso_size, csum_start, 16)
        if not self._writev((hdr, *bufs)):
            return
        c = self.counters
        c.tx_csum_offload += 1
        if gso_size:
            c.tx_gso += 1
            c.tx_gso_bytes += sum(len(b) for b in bufs)

    def vnet_header(self) -> bytes:
        """The virtio-net header of the frame being handed to the receiver right now (so a
        bridge can pass an offloaded frame on unchanged); valid only during that call."""
        return bytes(self._rbuf[: self.vnet_hdr_len])

    def send_vnet(self, header: Buffer, frame: Buffer) -> None:
        """Write ``frame`` with a virtio-net ``header`` taken from another TAP device's
        :meth:`vnet_header` (a GSO segment or a frame whose checksum is left to do)."""
        if not self._connected or not self.vnet_hdr_len:
            self.counters.tx_dropped += 1
            return
        self._writev((header, frame))

    def _on_writable(self) -> None:
        q, st = self._txq, self._stats
        while q:
            try:
                os.write(self._fd, q[0])
            except BlockingIOError:
                return
            except OSError as e:
                self.counters.tx_errors += 1
                self.counters.tx_dropped += 1
                if e.errno in (errno.EBADF, errno.ENODEV):
                    self.counters.tx_dropped += len(q) - 1
                    q.clear()
                    break
                q.popleft()
                continue
            st.tx_pkts += 1
            st.tx_bytes += len(q.popleft()) - self.vnet_hdr_len
        self._loop.remove_writer(self._fd)
        self._writing = False


_check: type[Network] = TapNetif
_check_link: type[FrameLink] = TapNetif
_check_offload: type[OffloadLink] = TapNetif
