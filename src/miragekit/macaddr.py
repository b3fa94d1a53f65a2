"""MAC addresses as a small immutable value (the seed's ``macaddr``)."""

from __future__ import annotations

import hashlib
from typing import Final


class MacAddr:
    """Six bytes; ``str()`` gives ``aa:bb:cc:dd:ee:ff``. Hashable and comparable."""

    __slots__ = ("_b",)
    _b: bytes

    def __init__(self, value: bytes | bytearray | memoryview | str) -> None:
        if isinstance(value, str):
            parts = value.replace("-", ":").split(":")
            if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
                raise ValueError(f"MacAddr: not a MAC address: {value!r}")
            try:
                raw = bytes(int(p, 16) for p in parts)
            except ValueError:
                raise ValueError(f"MacAddr: not a MAC address: {value!r}") from None
        else:
            raw = bytes(value)
            if len(raw) != 6:
                raise ValueError(f"MacAddr: need 6 bytes, got {len(raw)}")
        object.__setattr__(self, "_b", raw)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("MacAddr is immutable")

    @property
    def packed(self) -> bytes:
        """The six bytes, as on the wire."""
        return self._b

    @property
    def is_multicast(self) -> bool:
        return bool(self._b[0] & 1)

    @property
    def is_broadcast(self) -> bool:
        return self._b == b"\xff" * 6

    @classmethod
    def from_name(cls, name: str) -> MacAddr:
        """A locally administered unicast address that is the same for the same ``name``
        on every run: a device keeps its MAC (and its SLAAC address) across restarts."""
        return cls.local(hashlib.sha256(b"miragekit mac\0" + name.encode()).digest()[:6])

    @classmethod
    def local(cls, rnd: bytes) -> MacAddr:
        """A locally administered unicast address from 6 bytes (e.g. of entropy)."""
        if len(rnd) != 6:
            raise ValueError("MacAddr.local: need 6 bytes")
        return cls(bytes([(rnd[0] & 0xFC) | 0x02]) + rnd[1:])

    def __bytes__(self) -> bytes:
        return self._b

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self._b)

    def __repr__(self) -> str:
        return f"MacAddr('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MacAddr) and other._b == self._b

    def __lt__(self, other: MacAddr) -> bool:
        return self._b < other._b

    def __hash__(self) -> int:
        return hash(self._b)


BROADCAST: Final[MacAddr] = MacAddr(b"\xff" * 6)
