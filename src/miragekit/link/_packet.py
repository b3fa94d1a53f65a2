"""A NETWORK backend on an ``AF_PACKET`` socket with memory-mapped rings (a veth end).

Why: without offloads a TAP device costs one ``read`` or ``write`` system call per
1500-byte frame, about a quarter of our CPU per TCP segment (docs/performance.md). A
packet socket bound to an interface (one end of a veth pair) can share rings of frame
slots with the kernel instead (``PACKET_RX_RING``/``PACKET_TX_RING``, one ``mmap``):

* Receiving, the kernel writes frames into the RX ring and flips each slot's status
  (TPACKET_V2) or each block of frames (TPACKET_V3) to "user"; one ``add_reader``
  wake-up walks every ready frame, hands each to the receiver as a view into the ring,
  and gives the slot back. No system call per frame.
* Sending, frames are copied into TX ring slots marked "send request", and one
  ``send()`` per burst (:meth:`PacketNetif.send_frames`, what the TCP driver uses) has the
  kernel transmit them all.

TPACKET_V3 hands a block over only when it is full or its timer (``retire_ms``) expires,
which delays sparse traffic (a handshake, each ACK of a slow sender) by up to that time;
TPACKET_V2 hands over every frame at once. Both are offered (``version``);
``bench/tcp_iperf.py`` measures them.

The interface's peer must not leave checksums to be done (``ethtool -K PEER tx off``):
such frames (``TP_STATUS_CSUMNOTREADY``) carry only the pseudo-header sum and our stack
would drop them; they are counted in ``rx_csum_partial``. Frames longer than a ring slot
(V2) or a block (V3) are counted in ``rx_truncated`` and dropped. Our MAC differs from the interface's, so the
kernel on our side takes our frames for another host's and leaves them alone.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Self

from ..macaddr import MacAddr
from ..result import Error, NetworkError, Ok, Unknown
from ..v1 import Buffer, Network
from ._fd import FdLink
from ._frame import FrameLink
from ._netns import in_netns
from ._tap import read_mtu

SOL_PACKET: Final = 263
PACKET_RX_RING: Final = 5
PACKET_VERSION: Final = 10
PACKET_TX_RING: Final = 13
PACKET_QDISC_BYPASS: Final = 20
PACKET_IGNORE_OUTGOING: Final = 23
TPACKET_V2: Final = 1
TPACKET_V3: Final = 2
ETH_P_ALL: Final = 0x0003
IFNAMSIZ: Final = 16

TP_STATUS_KERNEL: Final = 0
TP_STATUS_USER: Final = 1
TP_STATUS_LOSING: Final = 4
TP_STATUS_CSUMNOTREADY: Final = 8
TP_STATUS_AVAILABLE: Final = 0
TP_STATUS_SEND_REQUEST: Final = 1
TP_STATUS_WRONG_FORMAT: Final = 4

_REQ3 = struct.Struct("=7I")  # tpacket_req3 (tpacket_req is its first four fields)
_REQ = struct.Struct("=4I")
# tpacket2_hdr: status, len, snaplen, mac, net (then sec, nsec, vlan: not read here)
_H2 = struct.Struct("=IIIHH")
# tpacket3_hdr from the start: next_offset, sec, nsec, snaplen, len, status, mac, net
_H3 = struct.Struct("=IIIIIIHH")
# tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status,
# num_pkts, offset_to_first_pkt
_BLOCK = struct.Struct("=IIIII")
_U32 = struct.Struct("=I")
_STATUS_KERNEL = bytes(4)
_LOW: Final = 0 if sys.byteorder == "little" else 3
"""Where a status word's low byte is (every TX status fits in it)."""
_SEND_REQUEST = _U32.pack(TP_STATUS_SEND_REQUEST)

H2_LEN: Final = 32
"""``TPACKET_ALIGN(sizeof(struct tpacket2_hdr))``: where a TX frame's data starts (V2)."""
H3_LEN: Final = 48
"""The same for ``struct tpacket3_hdr`` (V3)."""
FRAME_SIZE: Final = 2048
"""A ring slot: a whole 1514-byte frame fits behind the slot's header."""


@dataclass(slots=True)
class PacketCounters:
    """What :class:`~miragekit.v1.Stats` does not count: losses and errors."""

    rx_dropped: int = 0  # frames the async listen queue had no room for
    rx_truncated: int = 0  # frames longer than a slot (V2) or a block (V3): dropped
    rx_csum_partial: int = 0  # frames whose checksum the peer left to do (passed on)
    rx_losing: int = 0  # times the kernel said the RX ring had overflowed
    tx_queued: int = 0  # frames that waited for a free TX slot
    tx_dropped: int = 0  # frames dropped: queue full, too long, error or disconnected
    tx_errors: int = 0
    tx_kicks: int = 0  # send() calls that handed TX slots to the kernel
    link_errors: int = 0  # the interface went down or away (the socket's error, cleared)
    ring_views_kept: int = 0  # the ring outlived disconnect: a receiver kept a frame view


@dataclass(frozen=True, slots=True)
class RingLayout:
    """The sizes of both rings (each ``block_size * block_nr`` bytes of ``FRAME_SIZE``
    slots); V3's RX blocks are handed over when full or after ``retire_ms``."""

    block_size: int = 1 << 16
    rx_blocks: int = 64
    tx_blocks: int = 32
    retire_ms: int = 1

    @property
    def per_block(self) -> int:
        return self.block_size // FRAME_SIZE


def _open_packet(
    name: str, version: int, layout: RingLayout
) -> tuple[socket.socket, mmap.mmap, int]:
    """The packet socket bound to ``name`` with both rings mapped, and the MTU."""
    mtu = read_mtu(name)
    if mtu is None:
        raise OSError(errno.ENODEV, f"no interface {name!r} here")
    # Protocol 0: nothing arrives before bind, which comes after the rings exist.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3 if version == 3 else TPACKET_V2)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # not our own frames back
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        bs, per = layout.block_size, layout.per_block
        if version == 3:
            rx = _REQ3.pack(bs, layout.rx_blocks, FRAME_SIZE, per * layout.rx_blocks,
                            layout.retire_ms, 0, 0)  # fmt: skip
            tx = _REQ3.pack(bs, layout.tx_blocks, FRAME_SIZE, per * layout.tx_blocks, 0, 0, 0)
        else:
            rx = _REQ.pack(bs, layout.rx_blocks, FRAME_SIZE, per * layout.rx_blocks)
            tx = _REQ.pack(bs, layout.tx_blocks, FRAME_SIZE, per * layout.tx_blocks)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, rx)
        sock.setsockopt(SOL_PACKET, PACKET_TX_RING, tx)
        size = bs * (layout.rx_blocks + layout.tx_blocks)
        ring = mmap.mmap(sock.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            sock.bind((name, ETH_P_ALL))
        except OSError:
            ring.close()
            raise
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock, ring, mtu


class PacketNetif(FdLink[bytes, PacketCounters]):
    """One interface through a ring-mapped packet socket; ``mac()`` is our stack's MAC."""

    def __init__(
        self,
        sock: socket.socket,
        ring: mmap.mmap,
        name: str,
        *,
        version: int,
        layout: RingLayout,
        mtu: int,
        mac: MacAddr,
        loop: asyncio.AbstractEventLoop,
        tx_queue_limit: int = 1024,
        rx_queue_limit: int = 1024,
    ) -> None:
        super().__init__(
            sock.fileno(),
            loop=loop,
            mtu=mtu,
            mac=mac,
            counters=PacketCounters(),
            rbuf_size=0,
            tx_queue_limit=tx_queue_limit,
            rx_queue_limit=rx_queue_limit,
        )
        self._sock = sock
        self._ring = ring
        self._view = memoryview(ring)
        self._name = name
        self.version = version
        self.layout = layout
        per = layout.per_block
        self._rx_slots = per * layout.rx_blocks  # V2: frames; V3: blocks are walked
        self._rx_blocks = layout.rx_blocks
        self._rx_next = 0  # the next RX slot (V2) or block (V3) to look at
        self._tx_base = layout.block_size * layout.rx_blocks
        self._tx_slots = per * layout.tx_blocks
        self._tx_next = 0
        self._tx_data = H3_LEN if version == 3 else H2_LEN
        # Where the status and length words of a TX slot are (V3: len, status; V2: status, len).
        self._tx_status = 20 if version == 3 else 0
        self._tx_len = 16 if version == 3 else 4
        self._max_frame = FRAME_SIZE - self._tx_data

    @classmethod
    async def connect(
        cls,
        id: str,
        *,
        mac: MacAddr | str | None = None,
        mtu: int | None = None,
        version: int = 2,
        layout: RingLayout | None = None,
        netns: str | None = None,
    ) -> Ok[Self] | Error[NetworkError]:
        """Open interface ``id`` (one end of a veth pair; it must exist and be up).

        ``version`` is the ring layout, TPACKET_V2 (2) or V3 (3). ``netns`` names the
        network namespace (``ip netns``) the interface is in; the socket works from here.
        """
        if version not in (2, 3):
            raise ValueError(f"version: 2 or 3 (TPACKET_V2 or V3), not {version!r}")
        if not id or len(id.encode()) >= IFNAMSIZ or "/" in id:
            raise ValueError(f"id: not an interface name (at most {IFNAMSIZ - 1} bytes): {id!r}")
        lay = layout or RingLayout()
        if lay.block_size % FRAME_SIZE or lay.block_size % mmap.PAGESIZE:
            raise ValueError("layout: block_size must be a multiple of the page and slot size")
        loop = asyncio.get_running_loop()
        try:
            if netns is None:
                sock, ring, dev_mtu = _open_packet(id, version, lay)
            else:
                sock, ring, dev_mtu = in_netns(netns, lambda: _open_packet(id, version, lay))
        except OSError as e:
            if e.filename is not None:
                return Error(Unknown(f"network namespace {netns!r}: {e.strerror}"))
            where = f" (in network namespace {netns!r})" if netns is not None else ""
            return Error(Unknown(f"packet socket on {id!r}: {e.strerror or e}{where}"))
        if isinstance(mac, str):
            mac = MacAddr(mac)
        dev = cls(
            sock,
            ring,
            id,
            version=version,
            layout=lay,
            mtu=mtu if mtu is not None else dev_mtu,
            mac=mac or MacAddr.from_name(f"{socket.gethostname()} packet {id}"),
            loop=loop,
        )
        return Ok(dev)

    def id(self) -> str:
        return self._name

    def _close_fd(self) -> None:
        self._view.release()
        try:
            self._ring.close()
        except BufferError:
            # A receiver kept a view of a frame past its call: the mapping goes when the
            # last such view does.
            self.counters.ring_views_kept += 1
        self._sock.close()

    @property
    def closed(self) -> bool:
        """The ring is unmapped and the socket closed (after :meth:`disconnect`)."""
        return self._ring.closed and self._sock.fileno() == -1

    # --- receiving -------------------------------------------------------------------------

    def _on_readable(self) -> None:
        start = self._rx_next
        if self.version == 3:
            self._read_blocks()
        else:
            self._read_frames()
        if self._rx_next == start and self._connected:
            # Woken with nothing in the ring: an error on the socket (the interface went
            # down or away). Reading it clears it, or the wake-ups would never stop.
            err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.counters.link_errors += 1

    def _read_frames(self) -> None:
        """TPACKET_V2: every slot the kernel has handed over, in ring order."""
        view, c = self._view, self.counters
        unpack = _H2.unpack_from
        i, n = self._rx_next, self._rx_slots
        pkts = nbytes = 0
        try:
            for _ in range(n):
                off = i * FRAME_SIZE
                status, flen, snap, mac, _net = unpack(view, off)
                if not status & TP_STATUS_USER:
                    break
                i = i + 1 if i + 1 < n else 0
                self._rx_next = i
                # The per-frame work inline (a call more per frame is ~2% of the budget).
                try:
                    if snap < flen:
                        c.rx_truncated += 1
                    else:
                        if status & TP_STATUS_CSUMNOTREADY:
                            c.rx_csum_partial += 1
                        pkts += 1
                        nbytes += snap
                        fn = self._receiver
                        if fn is not None:
                            at = off + mac
                            fn(view[at : at + snap])
                finally:
                    view[off : off + 4] = _STATUS_KERNEL
                if not self._connected:
                    return
        finally:
            st = self._stats
            st.rx_pkts += pkts
            st.rx_bytes += nbytes

    def _read_blocks(self) -> None:
        """TPACKET_V3: every block the kernel has retired, each frame in it in order."""
        view, st, c = self._view, self._stats, self.counters
        bs = self.layout.block_size
        block_hdr, h3 = _BLOCK.unpack_from, _H3.unpack_from
        b, nb = self._rx_next, self._rx_blocks
        for _ in range(nb):
            base = b * bs
            _v, _p, bstatus, npkts, first = block_hdr(view, base)
            if not bstatus & TP_STATUS_USER:
                break
            b = b + 1 if b + 1 < nb else 0
            self._rx_next = b
            try:
                if bstatus & TP_STATUS_LOSING:
                    c.rx_losing += 1
                off = base + first
                for _ in range(npkts):
                    nxt, _s, _ns, snap, flen, status, mac, _net = h3(view, off)
                    if snap < flen:
                        c.rx_truncated += 1
                    else:
                        if status & TP_STATUS_CSUMNOTREADY:
                            c.rx_csum_partial += 1
                        st.rx_pkts += 1
                        st.rx_bytes += snap
                        fn = self._receiver
                        if fn is not None:
                            at = off + mac
                            fn(view[at : at + snap])
                        if not self._connected:
                            return
                    off += nxt
            finally:
                if self._connected:
                    view[base + 8 : base + 12] = _STATUS_KERNEL

    # --- sending ---------------------------------------------------------------------------

    def _put(self, frame: Buffer) -> bool:
        """Copy ``frame`` into the next TX slot; False when the ring is full."""
        view = self._view
        off = self._tx_base + self._tx_next * FRAME_SIZE
        st = off + self._tx_status
        status = view[st + _LOW]
        if status != TP_STATUS_AVAILABLE:
            if status & TP_STATUS_WRONG_FORMAT:
                self.counters.tx_errors += 1  # the kernel refused the frame it held
            else:
                return False
        n = len(frame)
        data = off + self._tx_data
        view[data : data + n] = frame
        _U32.pack_into(view, off + self._tx_len, n)
        view[st : st + 4] = _SEND_REQUEST
        self._tx_next = self._tx_next + 1 if self._tx_next + 1 < self._tx_slots else 0
        self._stats.tx_pkts += 1
        self._stats.tx_bytes += n
        return True

    def _kick(self) -> None:
        """Have the kernel send every slot marked "send request" (without waiting)."""
        self.counters.tx_kicks += 1
        try:
            self._sock.send(b"", socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        except OSError:
            self.counters.tx_errors += 1

    def send(self, frame: Buffer) -> None:
        self.send_frames((frame,))

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        self.send_frames((b"".join(bufs),))

    def send_frames(self, frames: Sequence[Buffer]) -> None:
        """Copy ``frames`` into TX slots and hand them to the kernel with one call; what
        the ring cannot take now waits (bounded) for free slots."""
        self.send_split(frames, [b""] * len(frames))

    def send_split(self, heads: Sequence[Buffer], bodies: Sequence[Buffer]) -> None:
        """:meth:`send_frames` of the frames ``heads[i] + bodies[i]``, each copied into its
        TX slot in its two parts: no joined frame is made first (a bulk sender's every
        segment is a prebuilt header and a slice of the send buffer)."""
        if not self._connected:
            self.counters.tx_dropped += len(heads)
            return
        done = 0
        if not self._txq:
            view, big, pack = self._view, self._max_frame, _U32.pack_into
            base, data_at, len_at, st_at = (
                self._tx_base,
                self._tx_data,
                self._tx_len,
                self._tx_status,
            )
            i, slots = self._tx_next, self._tx_slots
            nbytes = 0
            for h, b in zip(heads, bodies, strict=True):
                hn = len(h)
                n = hn + len(b)
                off = base + i * FRAME_SIZE
                st = off + st_at
                if n > big or view[st + _LOW]:
                    break
                d = off + data_at
                view[d : d + hn] = h
                view[d + hn : d + n] = b
                pack(view, off + len_at, n)
                view[st : st + 4] = _SEND_REQUEST
                i = i + 1 if i + 1 < slots else 0
                nbytes += n
                done += 1
            self._tx_next = i
            self._stats.tx_pkts += done
            self._stats.tx_bytes += nbytes
            if done == len(heads):
                if done:
                    self._kick()
                return
        rest = [bytes(h) + b for h, b in zip(heads[done:], bodies[done:], strict=True)]
        self._send_rest(rest, done > 0)

    def _send_rest(self, frames: Sequence[Buffer], sent: bool) -> None:
        """What the inline loop left: too long (dropped), the ring full (the kernel is
        asked to send what is filled, then the rest waits in the queue)."""
        c = self.counters
        put, big = self._put, self._max_frame
        queued = bool(self._txq)
        for f in frames:
            if len(f) > big:
                c.tx_dropped += 1
                continue
            if not queued:
                if put(f):
                    sent = True
                    continue
                queued = True
                if sent:  # free the slots the kernel has finished with, then try again
                    self._kick()
                    sent = False
                    if put(f):
                        sent = True
                        queued = False
                        continue
            self._enqueue(bytes(f))
        if sent:
            self._kick()

    def _on_writable(self) -> None:
        q = self._txq
        put = self._put
        while q:
            if not put(q[0]):
                break
            q.popleft()
        self._kick()
        if not q:
            self._loop.remove_writer(self._fd)
            self._writing = False


_check: type[Network] = PacketNetif
_check_link: type[FrameLink] = PacketNetif
