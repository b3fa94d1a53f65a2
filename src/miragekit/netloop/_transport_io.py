"""The per-read and per-write part of :class:`~miragekit.netloop.StackTransport`.

Why a class of its own: the transport subclasses ``asyncio.Transport``, which mypyc
cannot compile natively, and a simulated cluster runs its ``write`` and its delivery
twice an echo. :class:`TransportIO` is a plain class that the optional compiled build
makes native: its state is C fields, and the transport binds its ``write`` and
``is_closing`` to itself (instance attributes) and gives the flow its ``deliver``, so
asyncio's streams and the flow reach them without a Python frame. The transport's other
methods (closing, flow control, the tasks of flows without ``read_now``) read and set
the state here; what is rare (an error, the end, a write that has to wait) goes back to
the transport.
"""

from __future__ import annotations

from typing import Any


class TransportIO:
    """A transport's reading and writing state, and its hot paths.

    ``transport`` is the :class:`~miragekit.netloop.StackTransport` it serves (its
    ``_received``, ``_fatal`` and ``_queue`` take the rare cases).
    """

    def __init__(self, transport: Any, protocol: Any, buffered: bool) -> None:
        self.transport: Any = transport
        self.protocol: Any = protocol
        # Whether it takes data through get_buffer/buffer_updated (asyncio's TLS): known
        # once per protocol, not tested per read.
        self.buffered = buffered
        self.read_now: Any = None  # the flow's read_now_raw or read_now, if it has one
        self.send_now: Any = None  # the flow's send_now, if it has one
        self.out_size = 0  # bytes queued for the writer task
        self.eof = False  # write_eof() called
        self.closing = False
        self.lost = False  # connection_lost() scheduled
        self.reading_on = True  # reading wanted (not paused, not closing)
        self.delivering = True  # inside deliver; until connection_made, deliveries wait
        self.read_over = False  # EOF or the loss delivered: nothing more to read
        self.deliver_soon = False  # deliver was called back meanwhile

    def deliver(self) -> None:
        """Hand the protocol what the flow holds, while it reads (the flows with
        ``read_now``: called back, no task). Also the flow's ``on_readable``, called
        from the loop, outside the protocol."""
        if self.delivering:
            self.deliver_soon = True  # the protocol is being fed: one more round after
            return
        if self.read_over:
            return  # a callback queued before the end was delivered: eof_received once
        read_now = self.read_now  # set: this flow calls back
        self.delivering = True
        # Each callback of the flow says what one event brought (data, or the end, or an
        # error), and read_now_raw gives all the data held, so one read answers one
        # callback. Callbacks that came together (while the protocol was being fed,
        # before connection_made, while paused: ``deliver_soon``) may have brought the
        # end after the data: then read until nothing is left.
        drain = False
        try:
            while self.reading_on and not self.lost:
                if self.deliver_soon:
                    drain = True
                    self.deliver_soon = False
                r = read_now()
                if r is None:
                    if self.deliver_soon:
                        continue
                    return
                if type(r) is bytearray:
                    # The protocol fed here, not through the transport's _data: a call
                    # less on every request; what it raises is caught below, as _data
                    # catches it.
                    if self.buffered:
                        feed_buffered(self.protocol, r)
                    else:
                        self.protocol.data_received(bytes(r))
                    if not (drain or self.deliver_soon):
                        return
                elif not self.transport._received(r):
                    return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.transport._fatal(exc, "Fatal error: protocol.data_received() call failed.")
        finally:
            self.delivering = False

    def write(self, data: Any) -> None:
        """``asyncio.WriteTransport.write``: straight into the connection's send buffer
        when nothing waits, else queued for the writer task."""
        if self.eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self.lost:
            return  # after the loss asyncio drops the data (drain() raises)
        if self.out_size == 0 and self.send_now is not None and not self.closing:
            # Nothing queued or in flight: straight into the connection's send buffer.
            n = self.send_now(data)
            if n == len(data):
                return
            if n > 0:
                data = memoryview(data)[n:]
        self.transport._queue(data)

    def is_closing(self) -> bool:
        return self.closing


def feed_buffered(proto: Any, data: bytearray | memoryview) -> None:
    """Copy ``data`` into the buffers a ``BufferedProtocol`` offers, as asyncio does."""
    n = len(data)
    off = 0
    while off < n:
        buf = memoryview(proto.get_buffer(n - off)).cast("B")
        if not len(buf):
            raise RuntimeError("get_buffer() returned an empty buffer")
        k = min(len(buf), n - off)
        buf[:k] = data[off : off + k]
        proto.buffer_updated(k)
        off += k
