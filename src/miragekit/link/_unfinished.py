"""Recognising TCP/UDP checksums a sender left unfinished (transmit checksum offload).

Why: a Linux device with transmit checksum offload stores only the pseudo-header sum in
the checksum field, for a NIC to complete. Tunnelled to a userspace socket (a kernel
vxlan device on a veth), the packets arrive so; our stack rightly drops them, and
without a word every connection from that peer fails. Recognising the pattern lets the
link say which peer does it and what fixes it (docs/vxlan.md, "Checksums").
"""

from __future__ import annotations

from ..wire import checksum_v, pseudo_sum

_NAMES = {6: "TCP", 17: "UDP"}


def unfinished_checksum(frame: memoryview) -> str | None:
    """``"TCP"`` or ``"UDP"`` when the Ethernet ``frame`` carries such a segment whose
    checksum field holds just the pseudo-header sum (and so does not verify), else None."""
    if len(frame) < 34:
        return None
    kind = frame[12] << 8 | frame[13]
    if kind == 0x0800:
        ihl = (frame[14] & 0x0F) * 4
        proto = frame[23]
        if proto not in _NAMES or ihl < 20 or (frame[20] << 8 | frame[21]) & 0x3FFF:
            return None  # a fragment: no whole segment to judge
        src, dst = frame[26:30], frame[30:34]
        start, end = 14 + ihl, 14 + int.from_bytes(frame[16:18], "big")
    elif kind == 0x86DD and len(frame) >= 54:
        proto = frame[20]
        if proto not in _NAMES:
            return None
        src, dst = frame[22:38], frame[38:54]
        start, end = 54, 54 + int.from_bytes(frame[18:20], "big")
    else:
        return None
    field = start + (16 if proto == 6 else 6)
    if end > len(frame) or field + 2 > end:
        return None
    partial = pseudo_sum(src, dst, proto, end - start)
    got = int.from_bytes(frame[field : field + 2], "big")
    if got != partial or checksum_v((frame[start:end],), partial) == 0:
        return None
    return _NAMES[proto]
