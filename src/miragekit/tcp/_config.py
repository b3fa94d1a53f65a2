"""Per-connection settings (a runtime dataclass, where smoltcp uses compile-time features)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Config"]


@dataclass(frozen=True, slots=True)
class Config:
    """TCP settings; times in seconds, sizes in bytes.

    ``tso_max`` (0: off) lets one emitted segment carry up to that many payload bytes,
    whole MSS multiples, for TCP segmentation offload: the device cuts it into
    ``Connection.mss``-sized segments (the virtio-net ``gso_size``).
    ``tail_loss_probe`` sends one probe segment after about two round trips without an
    ACK (RFC 8985 TLP, with SACK), so a lost tail or a lost lone ACK costs a round trip,
    not an RTO; ``tlp_max_ack_delay`` is the peer's worst-case delayed ACK added to the
    probe timeout when a single segment is in flight (RFC 8985 WCDelAckT).
    ``hystart`` ends the initial slow start on a rising RTT (HyStart++, RFC 9406).
    ``keepalive_idle`` (None: off) probes an idle ESTABLISHED/CLOSE_WAIT peer after that
    many idle seconds, every ``keepalive_interval``, and gives up after
    ``keepalive_probes`` unanswered probes, so an idle connection to a vanished peer
    does not live forever. ``mss`` is the largest payload we accept and send, so the stack sets it from the
    path MTU (MTU - 40 for IPv4); the peer's MSS option clamps what we send further.
    ``ecn`` (RFC 3168): "accept" uses ECN when the peer's SYN asks for it (as Linux's
    default, tcp_ecn=2), "on" also asks in our SYNs, "off" never uses it.
    ``congestion``: "cubic" (RFC 9438, the default, as Linux) or "newreno" (RFC 5681).
    """

    mss: int = 1460
    send_buffer: int = 256 * 1024
    recv_buffer: int = 256 * 1024
    congestion: str = "cubic"
    delayed_ack: bool = True
    delayed_ack_timeout: float = 0.04
    nodelay: bool = False
    window_scaling: bool = True
    timestamps: bool = True
    sack: bool = True
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 60.0
    max_retransmits: int = 12
    syn_retries: int = 6
    msl: float = 30.0
    fin_wait_2_timeout: float = 60.0
    challenge_ack_limit: int = 10
    tso_max: int = 0
    tail_loss_probe: bool = True
    tlp_max_ack_delay: float = 0.2
    hystart: bool = True
    keepalive_idle: float | None = None
    keepalive_interval: float = 75.0
    keepalive_probes: int = 9
    default_mss: int = 536
    ecn: str = "accept"

    def __post_init__(self) -> None:
        if not 64 <= self.mss <= 65495:
            raise ValueError(f"mss: {self.mss} is outside 64..65495")
        if self.send_buffer < self.mss or self.recv_buffer < self.mss:
            raise ValueError("send_buffer/recv_buffer: must hold at least one MSS")
        if self.recv_buffer > (65535 << 14):
            raise ValueError("recv_buffer: exceeds the largest scaled window (65535 << 14)")
        if self.congestion not in ("newreno", "cubic"):
            raise ValueError(f"congestion: unknown algorithm {self.congestion!r}")
        if self.msl < 0 or self.fin_wait_2_timeout <= 0 or self.delayed_ack_timeout <= 0:
            raise ValueError("msl/fin_wait_2_timeout/delayed_ack_timeout: must be positive")
        if self.tlp_max_ack_delay < 0:
            raise ValueError("tlp_max_ack_delay: must not be negative")
        if not 0 <= self.tso_max <= 65535 - 60:
            raise ValueError(f"tso_max: {self.tso_max} is outside 0..65475")
        if self.ecn not in ("off", "accept", "on"):
            raise ValueError(f"ecn: {self.ecn!r} is not one of off, accept, on")
        if self.max_retransmits < 1 or self.syn_retries < 1:
            raise ValueError("max_retransmits/syn_retries: must be at least 1")

    @property
    def time_wait(self) -> float:
        return 2 * self.msl
