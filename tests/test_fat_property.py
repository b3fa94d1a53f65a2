"""Random operation sequences on FatFS against a plain in-memory model.

After each sequence the filesystem (and a fresh mount of its image) holds exactly what
the model holds, and ``fsck.fat -n`` has nothing to say.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fat_util import Tree, assert_fsck_clean, fresh_fs, mount, read_tree

from miragekit.result import Error, Ok

pytestmark = pytest.mark.tools

NAMES = ["a", "B.TXT", "mixed", "MIXED", "long name with spaces.data", "Ünïcode ✓", "d1", "D2"]


@dataclass
class Node:
    name: str
    data: bytearray | None = None  # None for a directory
    children: dict[str, Node] = field(default_factory=dict)


def key(name: str) -> str:
    return name.upper()


class Model:
    def __init__(self) -> None:
        self.root = Node("/")

    def find(self, parts: list[str]) -> tuple[Node | None, str | None]:
        """(node, error class name)."""
        n = self.root
        for i, p in enumerate(parts):
            if n.data is not None:
                return None, "NotADirectory"
            c = n.children.get(key(p))
            if c is None:
                return None, "NoDirectoryEntry"
            n = c
            del i
        return n, None

    def apply(self, op: str, parts: list[str], off: int, data: bytes) -> str | None:
        parent, err = self.find(parts[:-1])
        if err:
            return err
        assert parent is not None
        if parent.data is not None:
            return "NotADirectory"
        name = parts[-1]
        node = parent.children.get(key(name))
        if op in ("create", "mkdir"):
            if node is not None:
                return "FileAlreadyExists"
            parent.children[key(name)] = Node(name, bytearray() if op == "create" else None)
            return None
        if node is None:
            return "NoDirectoryEntry"
        if op == "write":
            if node.data is None:
                return "IsADirectory"
            if data:
                if off > len(node.data):
                    node.data.extend(bytes(off - len(node.data)))
                node.data[off : off + len(data)] = data
            return None
        if op == "destroy":
            if node.data is None and node.children:
                return "DirectoryNotEmpty"
            del parent.children[key(name)]
            return None
        raise AssertionError(op)

    def tree(self, n: Node | None = None) -> Tree:
        n = n or self.root
        return {
            c.name: bytes(c.data) if c.data is not None else self.tree(c)
            for c in n.children.values()
        }


paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)
ops = st.tuples(
    st.sampled_from(["create", "create", "mkdir", "write", "write", "write", "destroy"]),
    paths,
    st.integers(0, 9000),
    st.binary(min_size=0, max_size=5000),
)


def _norm(t: Tree) -> dict[str, object]:
    return {k: _norm(v) if isinstance(v, dict) else v for k, v in sorted(t.items())}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(fat=st.sampled_from([12, 16, 32]), seq=st.lists(ops, min_size=1, max_size=40))
def test_random_operations_match_the_model(
    fat: int, seq: list[tuple[str, list[str], int, bytes]]
) -> None:
    size = {12: 2 << 20, 16: 20 << 20, 32: 40 << 20}[fat]
    model = Model()

    async def go() -> bytes:
        fs, blk = await fresh_fs(size, fat)
        for op, parts, off, data in seq:
            path = "/" + "/".join(parts)
            expect = model.apply(op, parts, off, data)
            if op == "write":
                r = await fs.write(path, off, data)
            else:
                r = await getattr(fs, op)(path)
            if expect is None:
                assert isinstance(r, Ok), (op, path, r)
            else:
                assert isinstance(r, Error) and type(r.error).__name__ == expect, (op, path, r)
        want = _norm(model.tree())
        assert _norm(await read_tree(fs)) == want
        assert _norm(await read_tree(await mount(blk.data))) == want
        return bytes(blk.data)

    image = asyncio.run(go())
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "img"
        p.write_bytes(image)
        assert_fsck_clean(p)
