"""IPv4 options an echo reply carries back (RFC 1122 3.2.2.6), sans-I/O.

Why: ping -R (record route) and ping -T (timestamps) only work if the replying host
copies those options into its reply with its own entry added; the other options of the
request (source routes are dropped before this; security, stream ID) are not returned.
"""

from __future__ import annotations

from typing import Final

_EOL: Final = 0
_NOP: Final = 1
RECORD_ROUTE: Final = 7
TIMESTAMP: Final = 68
_NOT_UT: Final = 0x80000000  # RFC 791: the high bit marks a time that is not UT ms


def echo_options(opts: memoryview | bytes, our_ip: bytes, now_ms: int) -> bytes:
    """The record-route and timestamp options of ``opts`` updated with ``our_ip`` and
    ``now_ms`` (as RFC 791 says each host on the way does), padded to 32 bits; empty
    when there are none or the options are malformed."""
    out = bytearray()
    i = 0
    n = len(opts)
    while i < n:
        kind = opts[i]
        if kind == _EOL:
            break
        if kind == _NOP:
            i += 1
            continue
        if i + 1 >= n or not 2 <= opts[i + 1] <= n - i:
            return b""
        length = opts[i + 1]
        opt = bytearray(opts[i : i + length])
        if kind == RECORD_ROUTE and length >= 3:
            ptr = opt[2]
            if ptr >= 4 and ptr + 3 <= length:
                opt[ptr - 1 : ptr + 3] = our_ip
                opt[2] = ptr + 4
            out += opt
        elif kind == TIMESTAMP and length >= 4:
            _stamp(opt, our_ip, (now_ms & 0x7FFFFFFF) | _NOT_UT)
            out += opt
        i += length
    out += bytes(-len(out) % 4)
    return bytes(out)


def _stamp(opt: bytearray, our_ip: bytes, ts: int) -> None:
    """RFC 791's internet timestamp: flag 0 times only, 1 address and time, 3 times at
    prespecified addresses; no room left counts in the overflow nibble."""
    length, ptr, flag = len(opt), opt[2], opt[3] & 0x0F
    size = 4 if flag == 0 else 8
    if ptr < 5 or ptr + size - 1 > length:
        if (opt[3] >> 4) < 15:
            opt[3] += 0x10  # overflow
        return
    at = ptr - 1
    if flag == 0:
        opt[at : at + 4] = ts.to_bytes(4, "big")
    elif flag == 1:
        opt[at : at + 8] = our_ip + ts.to_bytes(4, "big")
    elif flag == 3:
        if bytes(opt[at : at + 4]) != our_ip:
            return  # not our turn
        opt[at + 4 : at + 8] = ts.to_bytes(4, "big")
    else:
        return
    opt[2] = ptr + size
