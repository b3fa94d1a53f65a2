"""The runner's options, checked once so misuse gives one clear line."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

NETS = ("socket", "vnet", "tap")


class OptionError(Exception):
    """A command-line option is misused; the message names it."""


@dataclass(frozen=True)
class Options:
    block: Path | None = None
    read_only: bool = False
    block_size: int = 32 * 1024 * 1024
    kv: Path | None = None
    seed: int | None = None
    sim: bool = False
    net: str = "socket"
    ip: str | None = None

    def check(self) -> None:
        if self.block is not None and self.block.exists() and self.block.is_dir():
            raise OptionError(f"--block {self.block}: is a directory, not a file or device")
        if self.block is not None and self.read_only and not self.block.exists():
            raise OptionError(f"--block {self.block}: no such file (and --read-only was given)")
        if self.kv is not None:
            if not self.kv.exists():
                raise OptionError(f"--kv {self.kv}: no such directory or tar archive")
            if not self.kv.is_dir() and not _looks_like_tar(self.kv):
                raise OptionError(f"--kv {self.kv}: neither a directory nor a tar archive")
        if self.net not in NETS and not self.net.startswith("tap:"):
            raise OptionError(f"--net {self.net}: use one of socket, vnet, tap, tap:NAME")
        if self.ip is not None:
            try:
                ipaddress.IPv4Interface(self.ip)
            except ValueError:
                raise OptionError(
                    f"--ip {self.ip}: not an IPv4 address or CIDR (e.g. 10.0.0.2/24)"
                ) from None
        if self.block_size <= 0 or self.block_size % 512:
            raise OptionError(f"--block-size {self.block_size}: must be a positive multiple of 512")


def _looks_like_tar(path: Path) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def parse_size(text: str) -> int:
    """``64M``, ``1G``, ``4096`` -> bytes (binary multiples)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if t and t[-1] in units:
        mult = units[t[-1]]
        t = t[:-1]
    try:
        n = int(t)
    except ValueError:
        raise OptionError(f"not a size: {text!r} (use e.g. 4096, 64M, 1G)") from None
    if n < 0:
        raise OptionError(f"not a size: {text!r} (negative)")
    return n * mult
