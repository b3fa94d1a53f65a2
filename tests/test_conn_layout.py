"""The per-connection objects lay their fields out hot first.

The compiled build (mypyc) lays a native class's fields out in the order ``__init__``
first assigns them. At 500 hosts every connection is cold in every cache when an echo
comes back to it, so each cache line of the object an echo reads is a miss: the fields
read at every visit come first, on as few lines as they fit, the rare ones last.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

from miragekit.net._tcp import TCP, TCPFlow, TcpSender
from miragekit.tcp import Config, Connection


def assignment_order(cls: type) -> list[str]:
    """The attributes ``cls.__init__`` assigns on ``self``, in the order it first does."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(vars(cls)["__init__"])))
    order: list[str] = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if (
                isinstance(t, ast.Attribute)
                and isinstance(t.value, ast.Name)
                and t.value.id == "self"
                and t.attr not in order
            ):
                order.append(t.attr)
    return order


# Read by every visit of an echo to a connection end (its deadlines for the endpoint's
# timer, the sequence space, the output path): measured with the slots traced in a
# 20-host echo run (each field read at 93% of the visits or more).
CONN_EVERY_VISIT = {
    "_ka_at",
    "_ctl_out",
    "_close_at",
    "_ack_at",
    "_tlp_at",
    "_rtx_at",
    "_rack_at",
    "_ep_at",
    "state",
    "config",
    "_sndbuf",
    "_snd_buf_seq",
    "_ecn",
    "_last_ack_sent",
    "_snd_nxt",
    "_ts_recent",
    "_rcv_adv",
    "_snd_max",
    "_rcv_nxt",
    "_snd_una",
    "_events",
    "_snd_wnd",
    "_ts_offset",
}
CONN_EVERY_VISIT_FLAGS = {
    "_ack_now",
    "_fin_queued",
    "_in_recovery",
    "_ts_on",
    "_tlp_probe",
    "_rexmit",
}
# Never read by an echo in the steady state (connection set-up, losses, counters).
CONN_RARE = {
    "local_port",
    "remote_port",
    "_fin_seq",
    "_xstats",
    "_ledger",
    "_retransmits",
    "_seg_max",
    "_iss",
    "_tfo",
    "_irs",
    "_peer_mss",
    "_ka_probes",
    "_rtt_time",
    "_challenge_count",
    "_challenge_second",
    "_prr_delivered",
    "_prr_out",
    "_recover_fs",
    "_push_upto",
    "_rescue",
    "_nodelay",
    "_eof_signalled",
}


def test_connection_assigns_every_slot_once() -> None:
    order = assignment_order(Connection)
    assert sorted(order) == sorted(Connection.__slots__)


def test_connection_every_visit_fields_first() -> None:
    order = assignment_order(Connection)
    n = len(CONN_EVERY_VISIT)
    assert set(order[:n]) == CONN_EVERY_VISIT
    # then the flags read at every visit, in the run of eight one-byte fields after
    assert set(order[n : n + 8]) >= CONN_EVERY_VISIT_FLAGS


def test_connection_rare_fields_last() -> None:
    order = assignment_order(Connection)
    assert set(order[-len(CONN_RARE) :]) == CONN_RARE


def test_connection_flags_in_runs_of_eight() -> None:
    """One-byte fields between 8-byte ones each take 8 bytes: they come eight at once."""
    conn = Connection(Config(), 1, 2, 3)
    order = assignment_order(Connection)
    flags = {name for name in order if type(getattr(conn, name)) is bool}
    runs: list[int] = []
    i = 0
    while i < len(order):
        if order[i] in flags:
            j = i
            while j < len(order) and order[j] in flags:
                j += 1
            runs.append(j - i)
            i = j
        else:
            i += 1
    assert runs[:-1] == [8] * (len(runs) - 1)
    assert sum(runs) == len(flags)


def test_sender_frame_fields_first() -> None:
    order = assignment_order(TcpSender)
    assert sorted(order) == sorted(TcpSender.__slots__)
    every_frame = {"_ident", "_gen", "_until", "_ip", "_eth_ip", "_ip_mid", "_ip_sum"}
    every_frame |= {"_tcp_sum", "_ports"}
    assert set(order[: len(every_frame)]) == every_frame


def test_flow_echo_fields_first() -> None:
    order = assignment_order(TCPFlow)
    assert sorted(order) == sorted(TCPFlow.__slots__)
    echo = {"_conn", "_tx", "_tcp", "_error", "_closed", "_done"}
    assert set(order[: len(echo)]) == echo


def test_driver_visit_fields_first() -> None:
    """A host's TCP driver: the fields read whenever a frame or a flush comes (a
    batch's held ACK and run, the flush, the lists of callbacks and writers) first."""
    order = assignment_order(TCP)
    visit = {"_ip", "_loop", "_flush_handle", "_rx_now", "_timer_at", "_flush_waiters"}
    visit |= {"_running", "_readable", "_told", "_rx_run", "_rx_ack", "_writers", "_flows"}
    assert set(order[: len(visit)]) == visit
