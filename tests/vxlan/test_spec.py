"""VxlanConfig validation and the runner's ``vxlan:VNI@LOCAL:PORT,REMOTE...`` syntax."""

from __future__ import annotations

import pytest

from miragekit.link import VxlanConfig, parse_vxlan_spec
from miragekit.macaddr import MacAddr


def test_full_spec() -> None:
    c = parse_vxlan_spec(
        "vxlan:42@10.0.0.1:4790,10.0.0.2,10.0.0.3:8472,mtu=1400,ttl=60,mac=02:00:00:00:00:05"
    )
    assert c == VxlanConfig(
        42,
        local=("10.0.0.1", 4790),
        remotes=[("10.0.0.2", 4790), ("10.0.0.3", 8472)],
        mtu=1400,
        learn_ttl=60.0,
        mac=MacAddr("02:00:00:00:00:05"),
    )
    assert c.remotes == (("10.0.0.2", 4790), ("10.0.0.3", 8472))


def test_minimal_and_variants() -> None:
    c = parse_vxlan_spec("7@127.0.0.1")
    assert (c.vni, c.local, c.remotes, c.group) == (7, ("127.0.0.1", 4789), (), None)
    g = parse_vxlan_spec("vxlan:0x10@10.0.0.1,group=239.1.1.1,netns=mk-x")
    assert (g.vni, g.group, g.netns) == (16, "239.1.1.1", "mk-x")
    v6 = parse_vxlan_spec("vxlan:5@[::1]:5000,[fe80::1],[::2]:6000")
    assert v6.local == ("::1", 5000) and v6.remotes == (("fe80::1", 5000), ("::2", 6000))
    assert parse_vxlan_spec("5@127.0.0.1:0").local == ("127.0.0.1", 0)
    assert parse_vxlan_spec("5@127.0.0.1,dstport=8472").dstport == 8472


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("vxlan:42", "VNI@LOCAL_ADDR"),
        ("vxlan:x@10.0.0.1", "VNI 'x' is not a number"),
        ("vxlan:16777216@10.0.0.1", "outside 0..16777215"),
        ("vxlan:1@", "local address is missing"),
        ("vxlan:1@host.example:4789", "'host.example' is not an IP address"),
        ("vxlan:1@10.0.0.1:99999", "port '99999'"),
        ("vxlan:1@10.0.0.1:x", "port 'x'"),
        ("vxlan:1@10.0.0.1,,10.0.0.2", "empty item"),
        ("vxlan:1@10.0.0.1,10.0.0.2:0", "port 0 is outside 1..65535"),
        ("vxlan:1@10.0.0.1,::1", "put IPv6 in brackets"),
        ("vxlan:1@10.0.0.1,[::1]", "family"),
        ("vxlan:1@10.0.0.1,[::1", "write [IPv6]:PORT"),
        ("vxlan:1@10.0.0.1,239.1.1.1", "use group="),
        ("vxlan:1@10.0.0.1,group=10.0.0.9", "not a multicast address"),
        ("vxlan:1@10.0.0.1,group=ff02::1", "family"),
        ("vxlan:1@10.0.0.1,mtu=big", "option 'mtu'"),
        ("vxlan:1@10.0.0.1,mtu=20", "mtu: 20 is outside"),
        ("vxlan:1@10.0.0.1,ttl=-1", "learn_ttl"),
        ("vxlan:1@10.0.0.1,mac=01:00:00:00:00:01", "multicast"),
        ("vxlan:1@10.0.0.1,mac=zz", "option 'mac'"),
        ("vxlan:1@10.0.0.1,color=red", "known keys are"),
        ("vxlan:1@10.0.0.1,dstport=0", "dstport: 0 is outside"),
        ("vxlan:1@10.0.0.1,netns=../etc", "netns: '../etc' is not a namespace name"),
    ],
)
def test_bad_specs(spec: str, words: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_vxlan_spec(spec)
    assert words in str(e.value) and spec in str(e.value)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"^vni"):
        VxlanConfig(-1)
    with pytest.raises(ValueError, match=r"^local"):
        VxlanConfig(1, local=("nowhere", 4789))
    with pytest.raises(ValueError, match=r"^remotes"):
        VxlanConfig(1, remotes=[("10.0.0.1", 70000)])
    with pytest.raises(ValueError, match=r"^learn_limit"):
        VxlanConfig(1, learn_limit=0)
    with pytest.raises(ValueError, match=r"^learn_ttl"):
        VxlanConfig(1, learn_ttl=float("inf"))
