"""The Internet checksum (RFC 1071) and the TCP/UDP pseudo-header sums, at C speed.

The ones'-complement sum of 16-bit big-endian words is congruent to the data read as one
big-endian integer modulo 0xFFFF (2**16 is 1 modulo 0xFFFF), so ``int.from_bytes`` and a
remainder do the whole loop in C. The remainder gives 0 where the ones'-complement sum
gives 0xFFFF ("negative zero") for non-zero data; that case is mapped back.
"""

from __future__ import annotations

from ..v1 import Buffer

__all__ = ["internet_checksum", "pseudo_header_sum"]


def internet_checksum(data: Buffer, initial: int = 0) -> int:
    """The 16-bit checksum to store for ``data``; 0 when verifying data that holds one.

    ``initial`` is a partial ones'-complement sum of other covered bytes (for example
    :func:`pseudo_header_sum`); any non-negative int congruent to it modulo 0xFFFF works.
    ``data`` is bytes-like with one-byte items. An odd trailing byte is padded with a zero byte, as RFC 1071 says.
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    total = value % 0xFFFF
    if total == 0 and value:
        total = 0xFFFF
    total += initial
    folded = total % 0xFFFF
    if folded == 0 and total:
        folded = 0xFFFF
    return ~folded & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """Partial sum of the IPv4 (4-byte) or IPv6 (16-byte) pseudo-header (RFC 9293, 8200).

    Both layouts sum to the same words: the addresses, the protocol and the length.
    """
    if len(src) not in (4, 16) or len(dst) != len(src):
        raise ValueError(
            f"src/dst: need two 4-byte or two 16-byte addresses, got {len(src)} and {len(dst)}"
        )
    return int.from_bytes(src + dst, "big") % 0xFFFF + protocol + (length >> 16) + (length & 0xFFFF)
