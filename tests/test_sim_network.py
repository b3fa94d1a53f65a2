"""Three IPv4 stacks on the virtual switch in simulated time: ARP, UDP, loss, partitions,
and the same seed giving byte-identical captures."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from pathlib import Path

from miragekit import sim
from miragekit.link import LinkParams, PcapNetif, VnetSwitch
from miragekit.net import IPv4Stack

A = ipaddress.IPv4Address


async def three_stacks(
    tmp: Path, loss: float = 0.0
) -> tuple[VnetSwitch, list[IPv4Stack], list[PcapNetif]]:
    sw = VnetSwitch()
    stacks: list[IPv4Stack] = []
    caps: list[PcapNetif] = []
    for i, name in enumerate("abc"):
        vif = sw.add_interface(name, link=LinkParams(latency=0.002, jitter=0.001, loss=loss))
        cap = PcapNetif(vif, str(tmp / f"{name}.pcap"))
        caps.append(cap)
        stacks.append(await IPv4Stack.connect(cap, cidr=f"10.0.0.{i + 1}/24"))
    return sw, stacks, caps


def scenario(tmp: Path, seed: int) -> dict[str, object]:
    """A, B and C talk UDP; C is partitioned away and healed. Returns what each saw."""

    async def main() -> dict[str, object]:
        sw, stacks, caps = await three_stacks(tmp, loss=0.05)
        got: dict[str, list[tuple[str, bytes]]] = {"a": [], "b": [], "c": []}
        for name, st in zip("abc", stacks, strict=True):

            async def rx(src: A, dst: A, sport: int, buf: memoryview, name: str = name) -> None:
                got[name].append((str(src), bytes(buf)))

            st.listen_udpv4(port=5000, callback=rx)
        # Every stack sends to every other, repeatedly (loss 5%: ARP retries and resends).
        for rnd in range(20):
            for i, st in enumerate(stacks):
                for j in range(3):
                    if i != j:
                        await st.udp.write(
                            f"{rnd}:{i}->{j}".encode(), dest_ip=A(f"10.0.0.{j + 1}"), dest_port=5000
                        )
            await asyncio.sleep(0.05)
        before = {k: len(v) for k, v in got.items()}
        sw.partition({"a", "b"}, {"c"})
        for _ in range(10):
            await stacks[0].udp.write(b"to-c-while-cut", dest_ip=A("10.0.0.3"), dest_port=5000)
            await stacks[0].udp.write(b"to-b-while-cut", dest_ip=A("10.0.0.2"), dest_port=5000)
            await asyncio.sleep(0.05)
        during = {k: len(v) for k, v in got.items()}
        sw.heal()
        for _ in range(10):
            await stacks[0].udp.write(b"to-c-healed", dest_ip=A("10.0.0.3"), dest_port=5000)
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        for st in stacks:
            await st.disconnect()
        for cap in caps:
            await cap.disconnect()
        return {
            "before": before,
            "during": during,
            "got": got,
            "counters": [st.counters() for st in stacks],
            "t": sim.now(),
        }

    result: dict[str, object] = sim.run(main(), seed=seed)
    return result


def test_arp_and_udp_across_three_stacks_with_loss_and_a_partition(tmp_path: Path) -> None:
    r = scenario(tmp_path, seed=7)
    got = r["got"]
    assert isinstance(got, dict)
    before = r["before"]
    during = r["during"]
    assert isinstance(before, dict) and isinstance(during, dict)
    # 20 rounds x 2 senders each: with 5% loss per link crossing, most arrive, not all.
    for name in "abc":
        assert 30 <= before[name] <= 40, before
    senders = {src for src, _ in got["c"][: before["c"]]}
    assert senders == {"10.0.0.1", "10.0.0.2"}  # ARP resolved both ways
    # While cut off, C hears nothing; B still does.
    assert during["c"] == before["c"]
    assert during["b"] > before["b"]
    # Healed: C hears A again.
    assert any(p == b"to-c-healed" for _, p in got["c"])
    assert not any(p == b"to-c-while-cut" for _, p in got["c"])
    counters = r["counters"]
    assert isinstance(counters, list)
    assert all(c["arp"] for c in counters)


def test_same_seed_gives_byte_identical_pcaps(tmp_path: Path) -> None:
    digests = []
    for run in ("one", "two"):
        d = tmp_path / run
        d.mkdir()
        scenario(d, seed=42)
        digests.append(
            {n: hashlib.sha256((d / f"{n}.pcap").read_bytes()).hexdigest() for n in "abc"}
        )
        assert (d / "a.pcap").stat().st_size > 1000
    assert digests[0] == digests[1]
    other = tmp_path / "other"
    other.mkdir()
    scenario(other, seed=43)
    assert hashlib.sha256((other / "a.pcap").read_bytes()).hexdigest() != digests[0]["a"]
