"""Every command README.md and docs/ show runs as written (see tests/docs_commands.py).

Each block runs in a fresh ``mk-`` network namespace (its own loopback, so documented
ports such as 8080 are free; its own TAP devices and bridges) with a private /run/netns,
in a scratch directory that links the repository's examples, README.md and .venv.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.docs_commands import NOT_RUN, ROOT, Block, all_blocks
from tests.netns import require_root, tag
from tests.netns import sh as ip_sh

pytestmark = pytest.mark.kernel

BLOCKS = all_blocks()
LINKED = ("examples", "README.md", "docs", ".venv", "demo.sh", "src", "pyproject.toml")


@pytest.fixture
def netns() -> Iterator[str]:
    require_root()
    name = f"mk-docs{tag()}"
    ip_sh("ip", "netns", "add", name)
    try:
        ip_sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_the_documented_commands_run(block: Block, netns: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    spec = tmp_path / "block.json"
    spec.write_text(json.dumps({"where": block.where, "lines": block.lines}))
    p = subprocess.run(
        ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
         sys.executable, str(ROOT / "tests" / "docs_commands.py"), str(spec), str(work)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    outcomes = json.loads(p.stdout)
    assert [o["line"] for o in outcomes] == block.lines
    for o in outcomes:
        if o["skipped"]:
            continue
        assert o["rc"] == 0, f"{block.where}: {o['line']!r} exited {o['rc']}:\n{o['output']}"
        assert "Traceback" not in o["output"], o["output"]
        if o["line"].startswith("curl "):
            assert "<html" in o["output"].lower(), o["output"]


def test_the_docs_show_commands_and_skip_few() -> None:
    lines = [line for b in BLOCKS for line in b.lines]
    assert len(BLOCKS) >= 10
    skipped = [line for line in lines if line.split()[0] in NOT_RUN]
    assert len(skipped) == 1  # ./test.sh


def test_the_examples_table_lists_every_example() -> None:
    text = (ROOT / "docs" / "running.md").read_text()
    for d in sorted((ROOT / "examples").iterdir()):
        if (d / "app.py").is_file():
            assert f"| `{d.name}` |" in text, d.name
