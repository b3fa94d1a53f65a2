"""RANDOM: bounds exactly as the seed says, reproducible when seeded."""

from __future__ import annotations

import pytest

from miragekit import v1
from miragekit.random import INT32_LIMIT, INT_LIMIT, Random


def test_conforms() -> None:
    r: v1.Random = Random(seed=1)
    assert 0 <= r.int(10) < 10


def test_limits() -> None:
    assert INT_LIMIT == 2**30
    assert INT32_LIMIT == 2**31


def test_seeded_is_reproducible() -> None:
    a, b = Random(seed=42), Random(seed=42)
    seq_a = [a.int(1000) for _ in range(100)] + [a.int32(2**31 - 1) for _ in range(100)]
    seq_b = [b.int(1000) for _ in range(100)] + [b.int32(2**31 - 1) for _ in range(100)]
    assert seq_a == seq_b
    c = Random(seed=43)
    assert [c.int(1000) for _ in range(100)] != seq_a[:100]


def test_unseeded_differ() -> None:
    a, b = Random(), Random()
    assert [a.int32(2**31 - 1) for _ in range(8)] != [b.int32(2**31 - 1) for _ in range(8)]


def test_self_init_reseeds() -> None:
    a, b = Random(seed=7), Random(seed=7)
    a.self_init()
    assert [a.int32(2**31 - 1) for _ in range(8)] != [b.int32(2**31 - 1) for _ in range(8)]


def test_values_are_in_range_and_cover_it() -> None:
    r = Random(seed=3)
    seen = {r.int(5) for _ in range(500)}
    assert seen == {0, 1, 2, 3, 4}
    assert r.int(1) == 0
    assert r.int32(1) == 0
    for _ in range(1000):
        assert 0 <= r.int(2**30 - 1) < 2**30 - 1
        assert 0 <= r.int32(2**31 - 1) < 2**31 - 1


@pytest.mark.parametrize("bound", [0, -1, 2**30, 2**40])
def test_int_bound_out_of_range(bound: int) -> None:
    r = Random(seed=1)
    with pytest.raises(ValueError, match="bound"):
        r.int(bound)


@pytest.mark.parametrize("bound", [0, -5, 2**31, 2**63])
def test_int32_bound_out_of_range(bound: int) -> None:
    r = Random(seed=1)
    with pytest.raises(ValueError, match="bound"):
        r.int32(bound)


def test_int32_accepts_above_int_limit() -> None:
    assert 0 <= Random(seed=1).int32(2**30) < 2**30


@pytest.mark.parametrize("bound", [1.5, True, "3"])
def test_non_int_bound_is_a_type_error(bound: object) -> None:
    with pytest.raises(TypeError, match="bound"):
        Random(seed=1).int(bound)  # type: ignore[arg-type]


def test_refused_call_does_not_advance_the_generator() -> None:
    a, b = Random(seed=9), Random(seed=9)
    with pytest.raises(ValueError):
        a.int(0)
    assert a.int(100) == b.int(100)
