"""iperf3: a server speaking iperf3's own protocol on TCP port 5201, and a small client.

The kernel's unmodified ``iperf3 -c`` measures whichever STACKV4 this runs on exactly as
it measures any host: forward (the client sends), reverse (``-R``, we send),
bidirectional (``--bidir``), one or several streams (``-P``), ending on time (``-t``),
bytes (``-n``) or blocks (``-k``), with ``-J`` output.

The protocol (iperf3's, written here from its documented facts):

* The client opens a control connection and sends a 37-byte cookie (36 characters and a
  NUL). The server answers with one signed byte per state change: PARAM_EXCHANGE, then
  reads the test's parameters as JSON behind a 4-byte big-endian length; CREATE_STREAMS,
  after which the client opens one data connection per stream, each starting with the
  same cookie; TEST_START and TEST_RUNNING once every stream is there.
* The client ends the test with TEST_END; the server answers EXCHANGE_RESULTS, reads the
  client's results JSON, sends its own (the bytes each stream received or sent), then
  DISPLAY_RESULTS; the client says IPERF_DONE.
* A refusal is SERVER_ERROR followed by two 4-byte big-endian numbers, iperf3's error
  code and an errno. UDP and SCTP tests are refused that way (IEUNIMP): TCP only.

Unlike the kernel's iperf3 server this one runs tests concurrently, told apart by their
cookies. ``--omit`` seconds are not subtracted (all bytes count), pacing (``-b``) is not
applied to TCP, and the sender reports no retransmission counts.

A sending stream hands its flow many ``-l`` blocks per write (up to :data:`SEND_CHUNK`,
one preallocated buffer written again and again): one 128 KiB block per write and per
event-loop turn cost our process half as much CPU again per byte sent over a TAP device
with offload (0.9 against 0.6 s/GB in bench/tcp_iperf.py) and about a third of its
throughput. It still stops after exactly ``-k`` blocks, or after the block that reaches
``-n`` bytes, as iperf3's sender does. A write is counted when it starts, so a test that
ends in the middle of one reports up to one chunk more than was queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import secrets
import struct
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from miragekit import v1
from miragekit.result import Ok

PORT = 5201
COOKIE_SIZE = 37
DEFAULT_LEN = 128 * 1024
MAX_STREAMS = 128
MAX_LEN = 1024 * 1024
#: How much a sending stream hands to its flow per write (whole blocks of ``-l``): large
#: writes keep the per-write overhead (and the event-loop hops) small per byte.
SEND_CHUNK = 1024 * 1024
#: How long a test may wait for its streams, and for messages outside the running phase.
HANDSHAKE_TIMEOUT = 30.0
#: A timed test is abandoned this long after it should have ended (a vanished client).
GRACE = 30.0

# iperf3's error codes (iperf_error.h) used in SERVER_ERROR.
IENUMSTREAMS = 6
IEBLOCKSIZE = 7
IEUNIMP = 13

_LEN = struct.Struct("!I")
_ERR = struct.Struct("!ii")
_COOKIE_CHARS = "abcdefghijklmnopqrstuvwxyz234567"


class State(enum.IntEnum):
    """The control states, sent as one signed byte each (iperf.h)."""

    TEST_START = 1
    TEST_RUNNING = 2
    TEST_END = 4
    PARAM_EXCHANGE = 9
    CREATE_STREAMS = 10
    SERVER_TERMINATE = 11
    CLIENT_TERMINATE = 12
    EXCHANGE_RESULTS = 13
    DISPLAY_RESULTS = 14
    IPERF_DONE = 16
    ACCESS_DENIED = -1
    SERVER_ERROR = -2


def state_byte(state: State) -> bytes:
    return struct.pack("b", state)


def encode_json(obj: dict[str, Any]) -> bytes:
    """A control-channel JSON message: 4-byte big-endian length, then the JSON text."""
    text = json.dumps(obj, separators=(",", ":")).encode()
    return _LEN.pack(len(text)) + text


def new_cookie() -> bytes:
    """A cookie as iperf3 makes them: 36 characters of base32 alphabet and a NUL."""
    return "".join(secrets.choice(_COOKIE_CHARS) for _ in range(COOKIE_SIZE - 1)).encode() + b"\0"


class Reader:
    """Exact-length reads over a FLOW, which hands out chunks of any size."""

    def __init__(self, flow: v1.Flow[Any]) -> None:
        self.flow = flow
        self._buf = bytearray()

    async def exactly(self, n: int) -> bytes | None:
        """``n`` bytes, or None if the flow ends (or fails) first."""
        while len(self._buf) < n:
            match await self.flow.read():
                case Ok(data):
                    self._buf += data
                case _:
                    return None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def state(self) -> int | None:
        b = await self.exactly(1)
        return None if b is None else struct.unpack("b", b)[0]

    async def json(self) -> dict[str, Any] | None:
        """One length-prefixed JSON object (None on EOF or anything that is not one)."""
        head = await self.exactly(4)
        if head is None:
            return None
        (n,) = _LEN.unpack(head)
        if n > 1 << 20:
            return None
        body = await self.exactly(n)
        try:
            obj = json.loads(body) if body is not None else None
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None

    def take_buffered(self) -> int:
        """Drop what is buffered (data that followed a stream's cookie); its length."""
        n = len(self._buf)
        self._buf.clear()
        return n


@dataclass(frozen=True)
class Params:
    """What the client asked for (the fields of iperf3's parameter JSON we act on)."""

    reverse: bool = False
    bidirectional: bool = False
    parallel: int = 1
    length: int = DEFAULT_LEN
    duration: float = 10.0
    omit: float = 0.0
    nbytes: int = 0
    blocks: int = 0

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> Params | int:
        """The parameters, or iperf3's error code for a test this server refuses."""
        if "udp" in j or "sctp" in j or "tcp" not in j:
            return IEUNIMP
        try:
            p = cls(
                reverse="reverse" in j,
                bidirectional="bidirectional" in j,
                parallel=int(j.get("parallel", 1)),
                length=int(j.get("len", DEFAULT_LEN)),
                duration=float(j.get("time", 10)),
                omit=float(j.get("omit", 0)),
                nbytes=int(j.get("num", 0)),
                blocks=int(j.get("blockcount", 0)),
            )
        except (TypeError, ValueError):
            return IEUNIMP
        if not 1 <= p.parallel <= MAX_STREAMS:
            return IENUMSTREAMS
        if not 1 <= p.length <= MAX_LEN:
            return IEBLOCKSIZE
        return p

    def to_json(self) -> dict[str, Any]:
        j: dict[str, Any] = {"tcp": True, "omit": self.omit, "time": self.duration}
        if self.nbytes:
            j["num"] = self.nbytes
        if self.blocks:
            j["blockcount"] = self.blocks
        j["parallel"] = self.parallel
        if self.reverse:
            j["reverse"] = True
        if self.bidirectional:
            j["bidirectional"] = True
        j["len"] = self.length
        j["client_version"] = "miragekit"
        return j

    @property
    def server_receives(self) -> bool:
        return self.bidirectional or not self.reverse

    @property
    def server_sends(self) -> bool:
        return self.bidirectional or self.reverse

    def stream_count(self) -> int:
        return self.parallel * (2 if self.bidirectional else 1)


def stream_id(index: int) -> int:
    """iperf3 numbers a test's streams 1, 3, 4, 5, ... in the order they are added."""
    return 1 if index == 0 else index + 2


def stream_result(id: int, nbytes: int, seconds: float) -> dict[str, Any]:
    """One stream in a results JSON (iperf3's client requires every one of these fields)."""
    return {"id": id, "bytes": nbytes, "retransmits": -1, "jitter": 0, "errors": 0,
            "packets": 0, "start_time": 0, "end_time": seconds}  # fmt: skip


@dataclass(eq=False)
class Stream:
    id: int
    sender: bool
    nbytes: int = 0
    task: asyncio.Task[None] | None = None


@dataclass(eq=False)
class Test:
    """One iperf3 test on the server: its parameters, streams and counters."""

    cookie: bytes
    params: Params
    peer: tuple[IPv4Address, int]
    streams: list[Stream] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    running: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    bytes_sent: int = 0
    blocks_sent: int = 0
    started: float = 0.0
    stopped: float | None = None
    cpu: tuple[float, float] = (0.0, 0.0)
    cpu_util: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def accepting(self) -> bool:
        return not self.ready.is_set() and not self.ended.is_set()

    def add_stream(self) -> Stream:
        """The next data stream: the receiving streams come first (as iperf3's server)."""
        i = len(self.streams)
        receivers = self.params.parallel if self.params.server_receives else 0
        s = Stream(stream_id(i), sender=i >= receivers)
        self.streams.append(s)
        if len(self.streams) == self.params.stream_count():
            self.ready.set()
        return s

    def start(self) -> None:
        self.started = time.monotonic()
        t = os.times()
        self.cpu = (t.user, t.system)
        self.running.set()

    def stop(self) -> None:
        """Freeze the counters and close the streams (as iperf3's server does on TEST_END:
        its client may be blocked reading the rest of a block until the stream ends)."""
        if self.stopped is not None:
            return
        self.stopped = time.monotonic()
        for s in self.streams:
            if s.task is not None:
                s.task.cancel()
        self.ended.set()
        t = os.times()
        wall = max(self.stopped - self.started, 1e-9) if self.started else 1e-9
        user = 100.0 * (t.user - self.cpu[0]) / wall
        system = 100.0 * (t.system - self.cpu[1]) / wall
        self.cpu_util = (user + system, user, system)

    def seconds(self) -> float:
        end = self.stopped if self.stopped is not None else time.monotonic()
        return max(end - self.started, 0.0) if self.started else 0.0

    def results(self) -> dict[str, Any]:
        """The server's results JSON, as iperf3's client requires its fields."""
        total, user, system = self.cpu_util
        return {
            "cpu_util_total": total,
            "cpu_util_user": user,
            "cpu_util_system": system,
            "sender_has_retransmits": 0 if self.params.server_sends else -1,
            "streams": [stream_result(s.id, s.nbytes, self.seconds()) for s in self.streams],
        }


@dataclass(frozen=True)
class Summary:
    """A finished (or abandoned) test, as the server saw it."""

    peer: tuple[IPv4Address, int]
    params: Params
    received: int
    sent: int
    seconds: float
    completed: bool


class Server:
    """The iperf3 server: every TCP connection on :data:`PORT` goes to :meth:`handle`."""

    def __init__(self, console: v1.Console | None = None) -> None:
        self._console = console
        self._tests: dict[bytes, Test] = {}
        self.summaries: list[Summary] = []

    async def handle(self, flow: v1.TCPFlow[IPv4Address]) -> None:
        reader = Reader(flow)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                cookie = await reader.exactly(COOKIE_SIZE)
        except TimeoutError:
            return
        if cookie is None:
            return
        test = self._tests.get(cookie)
        if test is None:
            await self._control(flow, reader, cookie)
        elif not test.accepting():
            await flow.write_nodelay(state_byte(State.ACCESS_DENIED))
        else:
            await self._stream(test, flow, reader)

    # -- the control connection ---------------------------------------------------------

    async def _control(self, flow: v1.TCPFlow[IPv4Address], r: Reader, cookie: bytes) -> None:
        await flow.write_nodelay(state_byte(State.PARAM_EXCHANGE))
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                raw = await r.json()
        except TimeoutError:
            raw = None
        if raw is None:
            return
        params = Params.from_json(raw)
        if isinstance(params, int):
            await flow.write_nodelay(state_byte(State.SERVER_ERROR) + _ERR.pack(params, 0))
            await self._log(f"iperf3: refused a test from {flow.get_dest()[0]} (error {params})")
            return
        test = Test(cookie, params, flow.get_dest())
        self._tests[cookie] = test
        try:
            completed = await self._run(flow, r, test)
        finally:
            test.stop()
            self._tests.pop(cookie, None)
        received = sum(s.nbytes for s in test.streams if not s.sender)
        sent = sum(s.nbytes for s in test.streams if s.sender)
        self.summaries.append(Summary(test.peer, params, received, sent, test.seconds(), completed))
        secs = test.seconds()
        rate = 8 * (received + sent) / secs / 1e6 if secs else 0.0
        how = "done" if completed else "abandoned"
        await self._log(
            f"iperf3: test from {test.peer[0]} {how}: {len(test.streams)} stream(s), "
            f"received {received} B, sent {sent} B in {secs:.2f} s ({rate:.1f} Mbit/s)"
        )

    async def _run(self, flow: v1.TCPFlow[IPv4Address], r: Reader, test: Test) -> bool:
        """Drive one test through its states; whether it completed."""
        await flow.write_nodelay(state_byte(State.CREATE_STREAMS))
        msg: asyncio.Task[int | None] = asyncio.ensure_future(r.state())
        try:
            ready = asyncio.ensure_future(test.ready.wait())
            await asyncio.wait(
                {msg, ready}, timeout=HANDSHAKE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            ready.cancel()
            if not test.ready.is_set():
                return False  # the client went away (or never opened its streams)
            await flow.write_nodelay(state_byte(State.TEST_START) + state_byte(State.TEST_RUNNING))
            test.start()
            limit = None
            if not (test.params.nbytes or test.params.blocks):
                limit = test.params.duration + test.params.omit + GRACE
            try:
                async with asyncio.timeout(limit):
                    state = await msg
            except TimeoutError:
                return False
            if state != State.TEST_END:
                return False  # CLIENT_TERMINATE, EOF, or something we do not speak
            test.stop()
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                # Our results go out with EXCHANGE_RESULTS, so they are there when the
                # client reads them right after sending its own (iperf3 3.12 in reverse
                # mode reads its control socket without blocking then: EAGAIN fails it).
                results = encode_json(test.results())
                await flow.write_nodelay(state_byte(State.EXCHANGE_RESULTS) + results)
                if await r.json() is None:
                    return False
                await flow.write_nodelay(state_byte(State.DISPLAY_RESULTS))
                return await r.state() in (State.IPERF_DONE, None)
        except TimeoutError:
            return False
        finally:
            msg.cancel()

    # -- data streams -------------------------------------------------------------------

    async def _stream(self, test: Test, flow: v1.TCPFlow[IPv4Address], r: Reader) -> None:
        s = test.add_stream()
        s.nbytes = 0 if s.sender else r.take_buffered()
        work = self._send(test, s, flow) if s.sender else self._receive(s, flow)
        s.task = asyncio.ensure_future(work)
        if test.stopped is not None:
            s.task.cancel()
        try:
            await test.ended.wait()  # the flow stays open until the test ends
        finally:
            s.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await s.task

    @staticmethod
    async def _receive(s: Stream, flow: v1.TCPFlow[IPv4Address]) -> None:
        while True:
            match await flow.read():
                case Ok(data):
                    s.nbytes += len(data)
                case _:
                    return

    @staticmethod
    async def _send(test: Test, s: Stream, flow: v1.TCPFlow[IPv4Address]) -> None:
        await test.running.wait()
        p = test.params
        n = p.length
        per = max(1, SEND_CHUNK // n)  # whole blocks per write
        # One preallocated buffer of ``per`` blocks, written again and again (immutable,
        # so the stack may queue it): no allocation or copy per block on our side.
        chunk = memoryview(os.urandom(n) * per)
        while True:
            k = per
            if p.blocks:
                k = min(k, p.blocks - test.blocks_sent)
            if p.nbytes:
                k = min(k, -(-(p.nbytes - test.bytes_sent) // n))
            if k <= 0:
                return
            # Counted before the write: a test that ends (and cancels us) in the middle of
            # it reports what we had started to queue, never less than the client got.
            s.nbytes += k * n
            test.bytes_sent += k * n
            test.blocks_sent += k
            if await flow.write(chunk if k == per else chunk[: k * n]) != Ok(None):
                return
            # A write that found room returns without suspending: let the control
            # connection (TEST_END) and the other streams run.
            await asyncio.sleep(0)

    async def _log(self, line: str) -> None:
        if self._console is not None:
            await self._console.log_s(line)


# -- a small client, for measuring between two of miragekit's own stacks ----------------


@dataclass(frozen=True)
class ClientResult:
    """What one client run measured, with the server's own counts."""

    sent: int
    received: int
    seconds: float
    server: dict[str, Any]

    def server_bytes(self) -> int:
        return sum(int(s["bytes"]) for s in self.server["streams"])


class ProtocolError(Exception):
    """The server broke the protocol or refused the test (the message says which)."""


async def _expect(r: Reader, want: State) -> None:
    got = await r.state()
    if got == State.SERVER_ERROR:
        err = await r.exactly(_ERR.size)
        codes = _ERR.unpack(err) if err is not None else None
        raise ProtocolError(f"server error {codes}")
    if got != want:
        raise ProtocolError(f"expected {want.name}, got {got}")


async def run_client(
    tcp: v1.TCP[IPv4Address], server: IPv4Address, params: Params, *, port: int = PORT
) -> ClientResult:
    """Run one iperf3 test against ``server`` (any iperf3 server) over ``tcp``.

    Forward or reverse, ``parallel`` streams, ending after ``params.duration`` seconds or
    ``params.nbytes`` bytes (reverse: once that many have arrived).
    """
    if params.bidirectional:
        raise ValueError("params.bidirectional: this client runs one direction")
    match await tcp.create_connection((server, port)):
        case Ok(ctrl):
            pass
        case err:
            raise ProtocolError(f"control connection: {err}")
    r = Reader(ctrl)
    cookie = new_cookie()
    try:
        await ctrl.write_nodelay(cookie)
        await _expect(r, State.PARAM_EXCHANGE)
        await ctrl.write_nodelay(encode_json(params.to_json()))
        await _expect(r, State.CREATE_STREAMS)
        flows = []
        for _ in range(params.parallel):
            match await tcp.create_connection((server, port)):
                case Ok(f):
                    flows.append(f)
                case err:
                    raise ProtocolError(f"data connection: {err}")
            await f.write_nodelay(cookie)
        await _expect(r, State.TEST_START)
        await _expect(r, State.TEST_RUNNING)
        counts = [0] * len(flows)
        started = time.monotonic()
        done = asyncio.Event()

        async def send(i: int, f: v1.TCPFlow[IPv4Address]) -> None:
            n = params.length
            per = max(1, SEND_CHUNK // n)
            chunk = memoryview(os.urandom(n) * per)
            while True:
                k = per
                if params.nbytes:  # whole blocks until the streams together reach nbytes
                    k = min(k, -(-(params.nbytes - sum(counts)) // n))
                    if k <= 0:
                        return
                counts[i] += k * n
                if await f.write(chunk if k == per else chunk[: k * n]) != Ok(None):
                    return
                await asyncio.sleep(0)

        async def receive(i: int, f: v1.TCPFlow[IPv4Address]) -> None:
            while True:
                match await f.read():
                    case Ok(data):
                        counts[i] += len(data)
                        if params.nbytes and sum(counts) >= params.nbytes:
                            done.set()
                    case _:
                        return

        work = send if not params.reverse else receive
        tasks = [asyncio.ensure_future(work(i, f)) for i, f in enumerate(flows)]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if params.nbytes else params.duration):
                if params.nbytes and not params.reverse:
                    await asyncio.gather(*tasks)  # each sender stops once nbytes are queued
                else:
                    await done.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        seconds = time.monotonic() - started
        total = sum(counts)
        await ctrl.write_nodelay(state_byte(State.TEST_END))
        await _expect(r, State.EXCHANGE_RESULTS)
        mine = {
            "cpu_util_total": 0,
            "cpu_util_user": 0,
            "cpu_util_system": 0,
            "sender_has_retransmits": -1,
            "streams": [stream_result(stream_id(i), c, seconds) for i, c in enumerate(counts)],
        }
        await ctrl.write_nodelay(encode_json(mine))
        theirs = await r.json()
        if theirs is None:
            raise ProtocolError("no results from the server")
        await _expect(r, State.DISPLAY_RESULTS)
        await ctrl.write_nodelay(state_byte(State.IPERF_DONE))
        for f in flows:
            await f.close()
    finally:
        await ctrl.close()
    sent, received = (0, total) if params.reverse else (total, 0)
    return ClientResult(sent, received, seconds, theirs)


async def start(console: v1.Console, stack: v1.StackV4) -> None:
    server = Server(console)
    stack.listen_tcpv4(port=PORT, callback=server.handle)
    ips = ", ".join(str(ip) for ip in stack.ipv4().get_ip())
    await console.log_s(f"iperf3: server on {ips} port {PORT}")
    await stack.listen()
