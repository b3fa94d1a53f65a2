"""The commands the documentation shows, extracted so a test can run them as written.

A *block* is what a reader would type in one go: a fenced ``sh`` block, the commands in
one row of a table (``miragekit run ...`` "then" ``socat ...``), or a ``miragekit run``
named in the prose. ``python tests/docs_commands.py BLOCK.json`` runs one block line by
line and prints a JSON report: a line of a server's command (``miragekit``, ``socat``...)
still running after a few seconds that has printed something is a server and keeps running while the next lines (its clients) run; at the
end each server gets SIGINT and must exit 0 in bounded time, like every other line.
The test runs this driver inside a fresh ``mk-`` network namespace with a private
``/run/netns``, so the blocks' own TAP devices, bridges and namespaces stay there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: The words a documented command starts with.
COMMANDS = ("miragekit ", ".venv/bin/miragekit ", "./demo.sh", "socat ", "curl ", "iperf3 ")

#: Commands shown but not run here, and why (kept short on purpose).
NOT_RUN = {
    "./test.sh": "the test suite itself",
}

_FENCE = re.compile(r"^```(\w*)\s*$")
_SPAN = re.compile(r"`([^`]+)`")


@dataclass
class Block:
    where: str  # file:line
    lines: list[str]


def _is_command(text: str) -> bool:
    return text.startswith(COMMANDS)


def extract(path: Path) -> list[Block]:
    rel = path.relative_to(ROOT)
    blocks: list[Block] = []
    text = path.read_text().splitlines()
    fence: str | None = None
    body: list[str] = []
    start = 0
    for i, line in enumerate(text, 1):
        m = _FENCE.match(line.strip())
        if m and fence is None:
            fence, body, start = m.group(1), [], i
            continue
        if m and fence is not None and not m.group(1):
            if fence in ("sh", "bash", "shell"):
                joined = "\n".join(body).replace("\\\n", " ")
                lines = [x.strip() for x in joined.splitlines() if x.strip()]
                lines = [x for x in lines if not x.startswith("#")]
                if lines:
                    blocks.append(Block(f"{rel}:{start}", lines))
            fence = None
            continue
        if fence is not None:
            body.append(line)
            continue
        spans = [s.strip() for s in _SPAN.findall(line)]
        if line.lstrip().startswith("|"):
            # `miragekit run` alone names the command; an invocation names an example.
            cmds = [
                s
                for s in spans
                if _is_command(s)
                and (" examples/" in s or not s.startswith(("miragekit", ".venv/")))
            ]
            if cmds:
                blocks.append(Block(f"{rel}:{i}", cmds))
        else:
            for s in spans:
                if s.startswith(("miragekit run examples/", "miragekit describe examples/")):
                    blocks.append(Block(f"{rel}:{i}", [s]))
    return blocks


def all_blocks() -> list[Block]:
    return [b for path in DOCS for b in extract(path)]


# --- the driver ------------------------------------------------------------------------

#: A line still running after this long, having printed something, is a server.
SERVER_AFTER = 3.0
#: The words a server's line can start with; any other line (a simulation run by
#: ``python``, ``ip``, ``curl``...) is one-shot however long it takes on a busy machine.
SERVER_WORDS = frozenset(("miragekit", ".venv/bin/miragekit", "./demo.sh", "socat", "iperf3"))
#: How long a line may take to print its first output.
FIRST_OUTPUT = 20.0
#: How long a one-shot line, or a server after SIGINT, may take to end.
LINE_LIMIT = 30.0


@dataclass
class Outcome:
    line: str
    rc: int | None
    server: bool
    output: str
    skipped: str = ""


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def drive(block: Block, workdir: Path) -> list[Outcome]:
    env = {k: v for k, v in os.environ.items() if k != "USER"}  # the recipes must not need it
    env["PATH"] = f"{workdir / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    results: list[Outcome] = []
    servers: list[tuple[Outcome, subprocess.Popen[bytes], Path]] = []
    for n, line in enumerate(block.lines):
        word = line.split()[0]
        if word in NOT_RUN:
            results.append(Outcome(line, None, False, "", NOT_RUN[word]))
            continue
        out = workdir / f".out{n}"
        with open(out, "wb") as f:
            proc = subprocess.Popen(
                ["bash", "-c", line],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        t0 = time.monotonic()
        may_serve = word in SERVER_WORDS
        while proc.poll() is None:
            took = time.monotonic() - t0
            if not may_serve:
                if took >= LINE_LIMIT:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
            elif took >= FIRST_OUTPUT or (took >= SERVER_AFTER and out.stat().st_size > 0):
                break
            time.sleep(0.05)
        if proc.poll() is None:
            time.sleep(0.5)  # a server's listeners come up right after its first line
            o = Outcome(line, None, True, "")
            servers.append((o, proc, out))
            results.append(o)
            continue
        results.append(Outcome(line, proc.returncode, False, _read(out)))
    for o, proc, out in reversed(servers):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            o.rc = proc.wait(timeout=LINE_LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            o.rc = None
        o.output = _read(out)
    return results


def main() -> int:
    block = Block(**json.loads(Path(sys.argv[1]).read_text()))
    workdir = Path(sys.argv[2])
    # This process has its own mount namespace (unshare): a private /run/netns keeps the
    # block's `ip netns add` to itself.
    Path("/run/netns").mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "mk-docs", "/run/netns"], check=True)
    print(json.dumps([asdict(o) for o in drive(block, workdir)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
