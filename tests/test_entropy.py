"""ENTROPY: OS entropy pushed to the handler, periodically, until disconnect."""

from __future__ import annotations

import asyncio

import pytest

from miragekit import v1
from miragekit.entropy import SOURCE_OS, SOURCE_SEEDED, Entropy, SeededEntropy
from miragekit.result import Error, NoEntropyDevice, Ok


async def _connect_os(**kw: object) -> Entropy:
    match await Entropy.connect("entropy", **kw):  # type: ignore[arg-type]
        case Ok(dev):
            return dev
        case other:
            raise AssertionError(other)


def test_conforms() -> None:
    e: type[v1.Entropy] = Entropy
    s: type[v1.Entropy] = SeededEntropy
    assert e is not s


def test_delivers_at_registration_and_periodically_until_disconnect() -> None:
    got: list[tuple[int, bytes]] = []

    async def main() -> None:
        dev = await _connect_os(interval=0.02, size=16)
        assert dev.id() == "entropy"
        await dev.handler(lambda source, buf: got.append((source, bytes(buf))))
        assert len(got) == 1  # immediately, before handler() returns
        await asyncio.sleep(0.15)
        n = len(got)
        assert n >= 3
        await dev.disconnect()
        await asyncio.sleep(0.08)
        assert len(got) == n

    asyncio.run(main())
    assert all(source == SOURCE_OS for source, _ in got)
    assert all(len(b) == 16 for _, b in got)
    assert len({b for _, b in got}) == len(got)  # fresh bytes every time


def test_single_handler_replaces_the_previous() -> None:
    first: list[bytes] = []
    second: list[bytes] = []

    async def main() -> None:
        dev = await _connect_os(interval=0.02)
        await dev.handler(lambda _s, b: first.append(bytes(b)))
        await dev.handler(lambda _s, b: second.append(bytes(b)))
        n_first = len(first)
        await asyncio.sleep(0.1)
        await dev.disconnect()
        assert len(first) == n_first == 1
        assert len(second) >= 2

    asyncio.run(main())


def test_no_entropy_device_is_an_error_value() -> None:
    def broken(n: int) -> bytes:
        raise OSError(38, "getrandom not implemented")

    r = asyncio.run(Entropy.connect("entropy", read=broken))
    assert isinstance(r, Error)
    assert isinstance(r.error, NoEntropyDevice)
    assert "getrandom" in r.error.msg
    r2 = asyncio.run(Entropy.connect("entropy", read=lambda n: b""))
    assert isinstance(r2, Error) and isinstance(r2.error, NoEntropyDevice)


def test_handler_after_disconnect_gets_nothing() -> None:
    got: list[bytes] = []

    async def main() -> None:
        dev = await _connect_os(interval=0.01)
        await dev.disconnect()
        await dev.handler(lambda _s, b: got.append(bytes(b)))
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert got == []


def test_seeded_is_reproducible_and_distinct_by_seed() -> None:
    async def collect(seed: int) -> list[tuple[int, bytes]]:
        got: list[tuple[int, bytes]] = []
        match await SeededEntropy.connect("sim", seed=seed, interval=0.01, size=40):
            case Ok(dev):
                pass
            case other:
                raise AssertionError(other)
        await dev.handler(lambda s, b: got.append((s, bytes(b))))
        while len(got) < 4:
            await asyncio.sleep(0.01)
        await dev.disconnect()
        return got[:4]

    a = asyncio.run(collect(1))
    b = asyncio.run(collect(1))
    c = asyncio.run(collect(2))
    assert a == b
    assert a != c
    assert all(s == SOURCE_SEEDED and len(buf) == 40 for s, buf in a)
    assert len({buf for _, buf in a}) == 4


@pytest.mark.parametrize(("kw", "name"), [({"size": 0}, "size"), ({"interval": 0}, "interval")])
def test_bad_arguments(kw: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Entropy("e", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        SeededEntropy("e", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        SeededEntropy("e", seed=-1)


def test_handler_must_be_callable() -> None:
    async def main() -> None:
        dev = SeededEntropy("e")
        with pytest.raises(TypeError, match="h must"):
            await dev.handler(3)  # type: ignore[arg-type]

    asyncio.run(main())
