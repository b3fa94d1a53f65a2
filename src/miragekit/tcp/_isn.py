"""Initial sequence numbers (RFC 6528): ISN = M + F(4-tuple, secret).

M is a 4-microsecond counter derived from the time the caller passes in (this module
reads no clock); F is a keyed BLAKE2s hash of the connection's addresses and ports, so an
off-path attacker cannot predict another connection's ISN, while a reused 4-tuple still
gets increasing numbers.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

__all__ = ["IsnGenerator"]

# A 4-tuple as the hash reads it: address, port, address, port (IPv4, IPv6).
_TUPLE: Final = {4: struct.Struct("!4sH4sH"), 16: struct.Struct("!16sH16sH")}


class IsnGenerator:
    __slots__ = ("_key", "_keyed8")

    def __init__(self, secret: bytes) -> None:
        if not 16 <= len(secret) <= 32:
            raise ValueError("secret: need 16 to 32 bytes")
        self._key = secret
        # The keyed state after the key block: copying it is cheaper than keying anew.
        self._keyed8 = hashlib.blake2s(key=secret, digest_size=8)

    def _hash(self, *parts: bytes | int) -> int:
        h = hashlib.blake2s(key=self._key, digest_size=4)
        for p in parts:
            h.update(p if isinstance(p, bytes) else p.to_bytes(8, "big"))
        return int.from_bytes(h.digest(), "big")

    def _pair(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        """One 64-bit keyed hash of the 4-tuple: F for the ISN (high half) and the
        timestamp offset (low half), so a new connection costs one hash, not two."""
        h = self._keyed8.copy()
        # One pack, not four pieces joined: about a sixth of the hash's cost.
        h.update(_TUPLE[len(laddr)].pack(laddr, lport, raddr, rport))
        return int.from_bytes(h.digest(), "big")

    def isn(self, now: float, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        return self.isn_and_ts_offset(now, laddr, lport, raddr, rport)[0]

    def ts_offset(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        """A per-connection timestamp offset, so TSval does not leak the host's uptime."""
        return self._pair(laddr, lport, raddr, rport) & 0xFFFFFFFF

    def isn_and_ts_offset(
        self, now: float, laddr: bytes, lport: int, raddr: bytes, rport: int
    ) -> tuple[int, int]:
        """``isn`` and ``ts_offset`` together, from one hash."""
        h = self._pair(laddr, lport, raddr, rport)
        return (int(now * 250_000) + (h >> 32)) & 0xFFFFFFFF, h & 0xFFFFFFFF

    def cookie_hash(self, *parts: bytes | int) -> int:
        """A keyed 32-bit hash for SYN cookies."""
        return self._hash(b"cookie", *parts)

    def port_hash(self, *parts: bytes | int) -> int:
        """A keyed 32-bit hash for ephemeral port selection (RFC 6056)."""
        return self._hash(b"port", *parts)
