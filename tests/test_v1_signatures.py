"""miragekit.v1 against the seed: every module type, val and record field is there."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from miragekit import result, v1

SEED = Path(__file__).resolve().parent.parent / "spec" / "mirage-v1-signatures.txt"


def parse_seed() -> dict[str, tuple[set[str], set[str]]]:
    """module type name -> (its own vals, the module types it includes)."""
    modules: dict[str, tuple[set[str], set[str]]] = {}
    current: str | None = None
    for line in SEED.read_text().splitlines():
        if m := re.match(r"module type (\w+) = sig", line):
            current = m.group(1)
            modules[current] = (set(), set())
        elif current and (m := re.match(r"val (\w+) :", line)):
            modules[current][0].add(m.group(1))
        elif current and (m := re.match(r"include (\w+)", line)):
            modules[current][1].add(m.group(1))
    return modules


SEED_MODULES = parse_seed()


def all_vals(name: str) -> set[str]:
    own, includes = SEED_MODULES[name]
    vals = set(own)
    for inc in includes:
        vals |= all_vals(inc)
    return vals


def test_seed_has_twenty_module_types() -> None:
    assert len(SEED_MODULES) == 20
    assert set(SEED_MODULES) == set(v1.SIGNATURES)


@pytest.mark.parametrize("name", sorted(SEED_MODULES))
def test_every_val_is_in_the_protocol(name: str) -> None:
    proto = v1.SIGNATURES[name]
    flow = v1.FLOW_TYPES.get(name)
    missing = [
        val
        for val in sorted(all_vals(name))
        if not hasattr(proto, val) and not (flow is not None and hasattr(flow, val))
    ]
    assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize(
    ("record", "fields"),
    [
        (
            v1.Tm,
            "tm_sec tm_min tm_hour tm_mday tm_mon tm_year tm_wday tm_yday tm_isdst",
        ),
        (v1.Info, "read_write sector_size size_sectors"),
        (v1.Stats, "rx_bytes rx_pkts tx_bytes tx_pkts"),
        (v1.Stat, "filename read_only directory size"),
    ],
)
def test_records_have_the_seed_fields(record: type, fields: str) -> None:
    assert [f.name for f in dataclasses.fields(record)] == fields.split()
    seed = SEED.read_text()
    for f in fields.split():
        assert f"# {f}" in seed or f"# mutable {f}" in seed


def test_error_variants_are_values() -> None:
    variants = re.findall(r"\| `(\w+)", SEED.read_text())
    names = {"".join(p.capitalize() for p in v.split("_")) for v in variants}
    names -= {"Ok", "Error", "Eof", "Tcp", "Udp"}
    for n in sorted(names):
        cls = getattr(result, n)
        assert dataclasses.is_dataclass(cls)
        params = getattr(cls, "__dataclass_params__", None)
        assert params is not None and params.frozen, n
    assert result.UnknownKey("k") == result.UnknownKey("k")
    assert result.Eof("EOF") is result.EOF and list(result.Eof) == [result.EOF]


def test_stats_is_mutable_and_records_are_frozen() -> None:
    s = v1.Stats()
    s.rx_pkts += 1
    assert s.rx_pkts == 1
    info = v1.Info(read_write=True, sector_size=512, size_sectors=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.sector_size = 4096  # type: ignore[misc]
