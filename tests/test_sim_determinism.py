"""The same seed gives the same run whatever ``PYTHONHASHSEED`` says: a leader and two
clients exchanging data over a lossy switch, run in fresh interpreters with different
hash seeds, give byte-identical captures and the same finish times."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from miragekit import aio, sim, v1
from miragekit.link import LinkParams, PcapNetif, VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def scenario(out: Path, seed: int) -> list[str]:
    """Leader ``l`` echoes; ``a`` and ``b`` each send 40 messages at the same moments."""

    async def main() -> list[str]:
        sw = VnetSwitch(seed=seed)
        stacks: list[DirectStackV4] = []
        caps: list[PcapNetif] = []
        for i, name in enumerate("lab"):
            vif = sw.add_interface(name, link=LinkParams(latency=0.003, loss=0.05))
            cap = PcapNetif(vif, str(out / f"{name}.pcap"))
            caps.append(cap)
            r = await DirectStackV4.connect(
                v1.StackConfig(name, None, cap, Static(f"10.0.0.{i + 1}/24"))
            )
            assert isinstance(r, Ok)
            stacks.append(r.value)
        await aio.start_server(_echo, stacks[0], 7000)
        done: list[str] = []

        async def client(name: str, st: DirectStackV4) -> None:
            reader, writer = await aio.open_connection(st, "10.0.0.1", 7000)
            for _ in range(40):
                msg = b"m" * 3000
                writer.write(msg)
                await writer.drain()
                assert await reader.readexactly(len(msg)) == msg
            done.append(f"{name} done at {sim.now():.6f}")
            writer.close()

        await asyncio.gather(client("a", stacks[1]), client("b", stacks[2]))
        for cap in caps:
            await cap.disconnect()
        return done

    result: list[str] = sim.run(main(), seed=seed)
    return result


def test_same_seed_same_run_whatever_the_hash_seed(tmp_path: Path) -> None:
    runs = []
    for hashseed in ("1", "2", "3", "4"):
        out = tmp_path / hashseed
        out.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        proc = subprocess.run(
            [sys.executable, __file__, str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
        assert len(digests) == 3 and all((out / n).stat().st_size > 10_000 for n in digests)
        runs.append((proc.stdout, digests))
    assert "a done at" in runs[0][0] and "b done at" in runs[0][0]
    assert all(run == runs[0] for run in runs[1:])


if __name__ == "__main__":
    for line in scenario(Path(sys.argv[1]), seed=7):
        print(line)
