"""``TapNetif.send_frames``: a burst written frame by frame in one tight loop (a bulk
sender's every segment goes this way); every frame reaches the kernel, in order, and is
counted once."""

from __future__ import annotations

import json
import subprocess

import pytest
from tests.kernelnet import KernelNet, run

from miragekit.link import TapNetif
from miragekit.result import Ok

pytestmark = pytest.mark.kernel


def _rx_packets(k: KernelNet) -> int:
    out = subprocess.run(
        ["ip", "-n", k.ns, "-s", "-j", "link", "show", k.tap],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def test_a_burst_reaches_the_kernel_whole_and_counted(knet: KernelNet) -> None:
    async def main() -> None:
        r = await TapNetif.connect(knet.tap)
        assert isinstance(r, Ok), r
        dev = r.value
        knet.move_in()
        before = _rx_packets(knet)
        dst = b"\x02\x00\x00\x00\x00\x99"  # not the kernel's MAC: it counts and drops them
        frames = [dst + dev.mac().packed + b"\x88\xb5" + bytes([i % 256]) * 986 for i in range(300)]
        dev.send_frames(frames)
        assert _rx_packets(knet) - before == 300
        st, c = dev.get_stats_counters(), dev.counters
        assert (st.tx_pkts, st.tx_bytes, c.tx_dropped, c.tx_errors) == (300, 300 * 1000, 0, 0)
        await dev.disconnect()
        # Disconnected: nothing is written, every frame counted as dropped.
        dev.send_frames(frames[:5])
        assert dev.counters.tx_dropped == 5

    run(main())
