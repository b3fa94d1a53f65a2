"""``miragekit switch`` between kernel network namespaces on TAP ports (real peers).

Each test runs the switch as a process, as a user would; the kernel's own counters and
the switch's (over the control socket) are both checked.
"""

from __future__ import annotations

import math
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.netns import namespaces, set_tx_checksum, sh, tag
from tests.switchproc import (
    nstat,
    snmp,
    switch_process,
    tap_pair,
    udp_probe,
    wait_until,
)

pytestmark = pytest.mark.kernel


def tap_tx_dropped(ns: str, dev: str) -> int:
    """Frames the kernel dropped on their way out of ``dev`` (its queue was full)."""
    import json

    out = subprocess.run(
        ["ip", "-n", ns, "-s", "-j", "link", "show", dev], capture_output=True, text=True
    ).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["dropped"])


def ping(ns: str, ip: str, count: int = 3, wait: float = 2.0) -> bool:
    p = subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.2", "-W", str(wait), ip],
        capture_output=True,
        text=True,
    )
    return p.returncode == 0


def iperf3(client_ns: str, server_ns: str, ip: str, *extra: str) -> float:
    """Bytes per second of a kernel TCP transfer (iperf3 -J), client to server or -R."""
    import json

    srv = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        p = subprocess.run(
            ["ip", "netns", "exec", client_ns, "iperf3", "-c", ip, "-J", *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stdout[-2000:]
        end = json.loads(p.stdout)["end"]
        return float(end["sum_received"]["bytes"]) / float(end["sum_received"]["seconds"])
    finally:
        srv.wait(timeout=30)


def test_ping_and_iperf3_both_ways_and_clean_exit(tmp_path: Path) -> None:
    with tap_pair(control=str(tmp_path / "ctl")) as pair:
        assert "offload on" in pair.sw.ready  # TAP ports only, no impairment
        pair.configure(static_arp=False)
        a, b = pair.ns
        assert ping(a, "10.79.0.2") and ping(b, "10.79.0.1")
        up = iperf3(a, b, "10.79.0.2", "-t", "2")
        down = iperf3(a, b, "10.79.0.2", "-t", "2", "-R")
        assert up > 5e6 and down > 5e6, (up, down)
        c = pair.sw.counters("a")
        assert c["in_bytes"] > 2 * 5e6 and c["out_bytes"] > 2 * 5e6
        assert pair.sw.stop(signal.SIGINT) == 0
        # The counters printed at exit, and the TAP devices the switch made are gone.
        assert re.search(r"^port a: in \d+ frames \d+ B, out \d+ frames", pair.sw.out, re.M)
        assert re.search(r"^port b: in \d+ frames", pair.sw.out, re.M)
        for ns, tap in zip(pair.ns, pair.taps, strict=True):
            gone = subprocess.run(["ip", "-n", ns, "link", "show", tap], capture_output=True)
            assert gone.returncode != 0
        assert not (tmp_path / "ctl").exists()


def test_one_percent_loss_within_four_sigma(tmp_path: Path) -> None:
    n, p = 20000, 0.01
    with tap_pair("--seed", "7", "--link", "a:loss=0.01", control=str(tmp_path / "c")) as pair:
        pair.configure()
        a, b = pair.ns
        before = snmp(b, "Udp", "InDatagrams")
        got = udp_probe(a, b, "10.79.0.2", n)
        arrived = snmp(b, "Udp", "InDatagrams") - before
        switch_lost = pair.sw.counters("a")["dropped_loss"]
        # Frames a's kernel could not queue for the switch (a stalled switch process)
        # never reached it: the kernel counts them, the link did not lose them.
        queued_out = tap_tx_dropped(a, pair.taps[0])
    lost = n - arrived - queued_out
    bound = 4 * math.sqrt(n * p * (1 - p))
    assert abs(lost - n * p) <= bound, (lost, n * p, bound)
    assert abs(switch_lost - n * p) <= bound, (switch_lost, n * p, bound)
    # The only frames on the link are the probes: the switch lost exactly what is missing.
    assert switch_lost == lost == n - len(got) - queued_out


def test_same_seed_drops_the_same_frames(tmp_path: Path) -> None:
    def missing(seed: int) -> list[int]:
        args = ("--seed", str(seed), "--link", "a:loss=0.05,duplicate=0.02,reorder=0.02")
        with tap_pair(*args) as pair:
            pair.configure()
            got = udp_probe(pair.ns[0], pair.ns[1], "10.79.0.2", 600)
        return sorted(set(range(600)) - set(got))

    first, second, other = missing(11), missing(11), missing(12)
    assert first == second
    assert 10 <= len(first) <= 60, first
    assert other != first


def test_partition_and_one_way_block_over_the_control_socket(tmp_path: Path) -> None:
    with tap_pair(control=str(tmp_path / "ctl")) as pair:
        pair.configure(static_arp=False)
        a, b = pair.ns
        assert ping(a, "10.79.0.2")
        assert pair.sw.ctl("partition", "a", "b") == {"ok": True}
        assert not ping(a, "10.79.0.2", count=2, wait=1)
        assert pair.sw.counters("b")["dropped_partition"] >= 2
        assert pair.sw.ctl("heal") == {"ok": True}
        assert ping(a, "10.79.0.2")
        # One way: a's frames no longer reach b, b's still reach a.
        assert pair.sw.ctl("block", "a", "b") == {"ok": True}
        assert udp_probe(a, b, "10.79.0.2", 20) == []
        assert udp_probe(b, a, "10.79.0.1", 20) == list(range(20))
        pair.sw.ctl("heal")
        assert udp_probe(a, b, "10.79.0.2", 20) == list(range(20))


def test_link_change_over_the_control_socket(tmp_path: Path) -> None:
    with tap_pair(control=str(tmp_path / "ctl")) as pair:
        pair.configure()
        a, b = pair.ns
        reply = pair.sw.ctl("link", "a", "loss=1")
        assert reply["ok"] and reply["link"]["loss"] == 1.0
        assert udp_probe(a, b, "10.79.0.2", 10) == []
        assert pair.sw.counters("a")["dropped_loss"] == 10
        pair.sw.ctl("link", "a", "loss=0")
        assert udp_probe(a, b, "10.79.0.2", 10) == list(range(10))


def test_ecn_marking_instead_of_loss(tmp_path: Path) -> None:
    with tap_pair("--link", "b:mark=0.02", "--seed", "3", control=str(tmp_path / "c")) as pair:
        pair.configure(static_arp=False)
        a, b = pair.ns
        for ns in pair.ns:
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.tcp_ecn=1")
        sa, sb = nstat(a), nstat(b)
        rate = iperf3(a, b, "10.79.0.2", "-t", "2", "-b", "20M")  # no queue overflows
        ea, eb = nstat(a), nstat(b)
        c, ca = pair.sw.counters("b"), pair.sw.counters("a")
    assert rate > 1e6
    ce_in = eb["IpExtInCEPkts"] - sb["IpExtInCEPkts"]
    assert c["marked_ce"] > 20 and ce_in >= c["marked_ce"] * 0.9, (c, ce_in)
    assert eb["IpInHdrErrors"] == sb["IpInHdrErrors"]  # the IPv4 checksums still hold
    assert ea["TcpExtTCPDeliveredCE"] - sa["TcpExtTCPDeliveredCE"] > 0  # the sender heard
    # Marked, never lost: every frame a's kernel sent reached b's, and the sender's only
    # retransmissions (if any) are tail-loss probes, not recoveries.
    assert ca["in_frames"] == c["out_frames"]
    assert not any(v for k, v in (ca | c).items() if k.startswith("dropped_")), (ca, c)
    retrans = ea["TcpRetransSegs"] - sa["TcpRetransSegs"]
    assert retrans <= ea["TcpExtTCPLossProbes"] - sa["TcpExtTCPLossProbes"]


def test_kernel_vxlan_endpoint_as_a_port(tmp_path: Path) -> None:
    """Namespace a on a TAP port; namespace b behind a kernel VXLAN device whose underlay
    (a veth pair) ends in namespace u, where the switch's VXLAN port listens."""
    t = tag()
    with namespaces("a", "b", "u") as (a, b, u):
        sh("ip", "link", "add", f"mk-{t}v", "netns", b, "type", "veth", "peer", "name", "u0")
        sh("ip", "link", "set", "u0", "netns", u)
        sh("ip", "-n", b, "addr", "add", "10.80.0.2/24", "dev", f"mk-{t}v")
        sh("ip", "-n", b, "link", "set", f"mk-{t}v", "up")
        sh("ip", "-n", u, "addr", "add", "10.80.0.1/24", "dev", "u0")
        sh("ip", "-n", u, "link", "set", "u0", "up")
        ports = [
            f"--port=a=tap:mk-{t}a,netns={a}",
            f"--port=v=vxlan:42@10.80.0.1:4789,10.80.0.2,netns={u}",
        ]
        with switch_process(*ports, control=str(tmp_path / "ctl")) as sw:
            sh("ip", "-n", a, "addr", "add", "10.79.0.1/24", "dev", f"mk-{t}a")
            sh("ip", "-n", a, "link", "set", f"mk-{t}a", "up")
            sh(
                "ip", "-n", b, "link", "add", "vx0", "type", "vxlan", "id", "42",
                "local", "10.80.0.2", "remote", "10.80.0.1", "dstport", "4789",
            )  # fmt: skip
            set_tx_checksum(b, "vx0", False)
            sh("ip", "-n", b, "addr", "add", "10.79.0.2/24", "dev", "vx0")
            sh("ip", "-n", b, "link", "set", "vx0", "up")
            assert wait_until(lambda: ping(a, "10.79.0.2", count=1, wait=1), 15)
            assert ping(b, "10.79.0.1")
            assert udp_probe(a, b, "10.79.0.2", 50) == list(range(50))
            c = sw.counters("v")
            assert c["out_frames"] >= 50 and c["in_frames"] >= 3  # probes out, replies in


def test_pcap_records_the_frames_and_offload_stays_off(tmp_path: Path) -> None:
    from scapy.layers.inet import ICMP
    from scapy.utils import rdpcap

    pcap = tmp_path / "sw.pcap"
    with tap_pair("--pcap", str(pcap)) as pair:
        assert "offload on" not in pair.sw.ready  # a capture shows wire-sized frames
        pair.configure(static_arp=False)
        assert ping(pair.ns[0], "10.79.0.2")
        assert pair.sw.stop() == 0
    echoes = [p[ICMP].type for p in rdpcap(str(pcap)) if p.haslayer(ICMP)]
    assert echoes.count(8) >= 3 and echoes.count(0) >= 3
