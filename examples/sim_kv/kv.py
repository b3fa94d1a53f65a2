"""sim_kv: a small replicated key-value store written as plain asyncio.

Nothing here knows about miragekit: the nodes serve with ``asyncio.start_server`` and
talk with ``asyncio.open_connection`` by host name, so the same code runs on real
sockets or, in ``scenario.py``, on ``miragekit.sim.Network`` hosts.

One node leads, the others follow. Clients send lines to the leader:

* ``PUT key value`` -> ``OK`` once the write is safe, ``NOTLEADER`` from a follower;
* ``GET key`` -> ``VALUE value`` or ``NONE`` (only the leader answers);
* ``PING`` -> ``PONG leader`` or ``PONG follower``.

The leader appends each write to its log and streams the log to every follower over one
TCP connection each (``REPL_PORT``); a follower applies entries in order and answers
``ACK index``. The leader says ``OK`` to a client when every follower has acknowledged
the entry, so any follower holds every acknowledged write. With ``unsafe_ack=True`` it
says ``OK`` as soon as the write is in its own memory, the classic mistake: the write
is acknowledged before it is replicated, and a leader that dies before its followers
have it takes it along.

Failover is the monitor's job (as a sentinel process would do it): after three missed
``PING``s it tells the standby ``PROMOTE epoch follower...`` and the other followers
``FOLLOW standby``. A new leader's epoch is higher; a follower that meets it drops the
old leader's entries the new leader never had (none of them was acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib

CLIENT_PORT = 7000
REPL_PORT = 7001
#: How long a client or the monitor waits for one answer.
TIMEOUT = 1.0


class Node:
    """One replica: a leader (``leader == name``) or a follower of ``leader``."""

    def __init__(
        self, name: str, leader: str, followers: list[str], *, unsafe_ack: bool = False
    ) -> None:
        self.name = name
        self.leader = leader
        self.followers = followers if leader == name else []
        self.unsafe_ack = unsafe_ack
        self.epoch = 1
        self.base = 0  # the log's length when this node became leader
        self.log: list[tuple[int, str, str]] = []  # (epoch, key, value), index = position + 1
        self.data: dict[str, str] = {}
        self.acked: dict[str, int] = {}  # follower -> highest index it applied
        self.changed = asyncio.Condition()
        self.senders: list[asyncio.Task[None]] = []
        self.upstream: asyncio.StreamWriter | None = None  # the stream from our leader

    async def serve(self) -> None:
        clients = await asyncio.start_server(self.serve_client, None, CLIENT_PORT)
        repl = await asyncio.start_server(self.serve_replication, None, REPL_PORT)
        if self.leader == self.name:
            self.lead()
        async with clients, repl:
            await asyncio.gather(clients.serve_forever(), repl.serve_forever())

    # --- leading -------------------------------------------------------------------------

    def lead(self) -> None:
        self.base = len(self.log)
        self.acked = {f: 0 for f in self.followers}
        self.senders = [asyncio.create_task(self.replicate_to(f)) for f in self.followers]

    async def replicate_to(self, follower: str) -> None:
        """Stream the log to ``follower``, reconnecting after any failure."""
        while True:
            writer = None
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(follower, REPL_PORT), TIMEOUT
                )
                writer.write(f"LEADER {self.name} {self.epoch} {self.base}\n".encode())
                have = int((await reader.readline()).split()[1])
                acks = asyncio.create_task(self.read_acks(follower, reader))
                try:
                    await self.send_log(writer, have, acks)
                finally:
                    acks.cancel()
            except (OSError, TimeoutError, IndexError, ValueError):
                pass
            finally:
                if writer is not None:
                    writer.close()
            await asyncio.sleep(0.5)

    async def send_log(
        self, writer: asyncio.StreamWriter, sent: int, acks: asyncio.Task[None]
    ) -> None:
        def more() -> bool:
            return len(self.log) > sent or acks.done()

        while not acks.done():
            async with self.changed:
                await self.changed.wait_for(more)
            for i in range(sent, len(self.log)):
                _, key, value = self.log[i]
                writer.write(f"SET {i + 1} {key} {value}\n".encode())
            sent = len(self.log)
            await writer.drain()

    async def read_acks(self, follower: str, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                self.acked[follower] = max(self.acked[follower], int(line.split()[1]))
                async with self.changed:
                    self.changed.notify_all()
        finally:
            async with self.changed:
                self.changed.notify_all()  # the sender sees the stream is gone

    async def put(self, key: str, value: str) -> None:
        self.log.append((self.epoch, key, value))
        self.data[key] = value
        index = len(self.log)
        async with self.changed:
            self.changed.notify_all()
            if not self.unsafe_ack:  # wait until every follower has it
                await self.changed.wait_for(
                    lambda: all(self.acked[f] >= index for f in self.followers)
                )

    # --- following -----------------------------------------------------------------------

    async def serve_replication(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            _, leader, epoch_s, base_s = (await reader.readline()).decode().split()
            epoch, base = int(epoch_s), int(base_s)
            if leader != self.leader or leader == self.name or epoch < self.epoch:
                return  # not our leader (any more)
            if epoch > self.epoch:  # a new leader: keep only what it had when elected
                self.epoch = epoch
                del self.log[base:]
                self.data = {k: v for _, k, v in self.log}
            if self.upstream is not None:
                self.upstream.close()
            self.upstream = writer
            writer.write(f"HAVE {len(self.log)}\n".encode())
            while (line := await reader.readline()) and self.leader == leader:
                _, index_s, key, value = line.decode().split()
                if int(index_s) == len(self.log) + 1:
                    self.log.append((epoch, key, value))
                    self.data[key] = value
                writer.write(f"ACK {len(self.log)}\n".encode())
        except (OSError, ValueError):
            pass
        finally:
            writer.close()

    # --- clients and the monitor ---------------------------------------------------------

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                writer.write(await self.answer(line.decode().split()) + b"\n")
                await writer.drain()
        except (OSError, ValueError):
            pass
        finally:
            writer.close()

    async def answer(self, words: list[str]) -> bytes:
        match words:
            case ["PING"]:
                return b"PONG leader" if self.leader == self.name else b"PONG follower"
            case ["PUT", key, value] if self.leader == self.name:
                await self.put(key, value)
                return b"OK"
            case ["GET", key] if self.leader == self.name:
                found = self.data.get(key)
                return b"NONE" if found is None else f"VALUE {found}".encode()
            case ["PUT" | "GET", *_]:
                return b"NOTLEADER"
            case ["PROMOTE", epoch, *followers]:
                if self.leader == self.name:  # a repeated order (its answer was lost)
                    return b"OK"
                if self.upstream is not None:
                    self.upstream.close()
                self.leader, self.epoch, self.followers = self.name, int(epoch), followers
                self.lead()
                return b"OK"
            case ["FOLLOW", leader]:
                if self.upstream is not None:
                    self.upstream.close()
                self.leader = leader
                return b"OK"
        return b"ERROR"


async def request(host: str, line: str) -> str:
    """One request on a fresh connection: the answer, or ``OSError``/``TimeoutError``."""
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(host, CLIENT_PORT)
        try:
            writer.write(line.encode() + b"\n")
            return (await reader.readline()).decode().strip()
        finally:
            writer.close()


async def monitor(leader: str, standby: str, others: list[str]) -> float:
    """Ping ``leader`` every half second; after three misses in a row promote ``standby``
    (with ``others`` as its followers) and point ``others`` at it. Returns the time."""
    misses = 0
    while misses < 3:
        await asyncio.sleep(0.5)
        try:
            misses = 0 if (await request(leader, "PING")).startswith("PONG") else misses + 1
        except (OSError, TimeoutError):
            misses += 1
    for host, line in [(standby, f"PROMOTE 2 {' '.join(others)}")] + [
        (o, f"FOLLOW {standby}") for o in others
    ]:
        while True:
            with contextlib.suppress(OSError, TimeoutError):
                if await request(host, line) == "OK":
                    break
            await asyncio.sleep(0.5)
    return asyncio.get_running_loop().time()


class Client:
    """Keeps one connection to the node it believes leads, and moves on to the next node
    when that one fails to answer or says ``NOTLEADER``."""

    def __init__(self, nodes: list[str]) -> None:
        self.nodes = nodes
        self.current = 0
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def ask(self, line: str) -> str | None:
        """The leader's answer, or ``None`` if the node asked gave none in time (a write
        that may or may not have happened)."""
        try:
            async with asyncio.timeout(TIMEOUT):
                if self.conn is None:
                    self.conn = await asyncio.open_connection(self.nodes[self.current], CLIENT_PORT)
                reader, writer = self.conn
                writer.write(line.encode() + b"\n")
                answer = (await reader.readline()).decode().strip()
            if answer and answer != "NOTLEADER":
                return answer
        except (OSError, TimeoutError):
            pass
        self.next_node()
        return None

    def next_node(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None
        self.current = (self.current + 1) % len(self.nodes)


async def client(
    name: str, nodes: list[str], write_until: float, check_at: float
) -> dict[str, object]:
    """Write ``name-0``, ``name-1``, ... five times a second until ``write_until``,
    reading each acknowledged one back at once; at ``check_at`` read every acknowledged
    write again from whoever leads then. Returns counts and the acknowledged writes that
    are gone (``lost``)."""
    loop = asyncio.get_running_loop()
    kv = Client(nodes)
    acked: dict[str, str] = {}
    written = read_back = 0
    while loop.time() < write_until:
        key, value = f"{name}-{written}", f"v{written}"
        written += 1
        if await kv.ask(f"PUT {key} {value}") == "OK":
            acked[key] = value
            if await kv.ask(f"GET {key}") == f"VALUE {value}":
                read_back += 1
        await asyncio.sleep(0.2)
    await asyncio.sleep(max(0.0, check_at - loop.time()))
    lost = []
    for key, value in acked.items():
        while (answer := await kv.ask(f"GET {key}")) is None:
            await asyncio.sleep(0.2)
        if answer != f"VALUE {value}":
            lost.append(key)
    return {"written": written, "acked": len(acked), "read_back": read_back, "lost": lost}
