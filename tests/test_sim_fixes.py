"""What a new user of the simulation met (issue 15): shared link parameters, deadlock
detection, leftover servers at the end of a run, named switches outliving a run."""

from __future__ import annotations

import asyncio

from miragekit import sim
from miragekit.link import ImpairedLink, LinkParams, VnetIf, VnetSwitch


def _frame(src: VnetIf, dst: VnetIf, payload: bytes) -> bytes:
    return dst.mac().packed + src.mac().packed + b"\x88\xb5" + payload.ljust(46, b"\0")


def test_interfaces_made_from_one_link_params_do_not_share_it() -> None:
    """Cutting one cable leaves the others made from the same LinkParams up."""

    async def main() -> tuple[list[bytes], bool]:
        params = LinkParams(latency=0.001)
        sw = VnetSwitch(seed=1)
        a, b, c = (sw.add_interface(n, link=params) for n in "abc")
        got: list[bytes] = []
        for vif in (a, b):
            vif.set_receiver(lambda f: None)
        c.set_receiver(lambda f: got.append(bytes(f[14:17])))
        a.link.up = False
        a.send(_frame(a, c, b"a->"))
        b.send(_frame(b, c, b"b->"))
        await asyncio.sleep(0.1)
        return got, params.up

    got, original_up = sim.run(main(), seed=1)
    assert got == [b"b->"]  # a's cable is cut, b's is not
    assert original_up  # the caller's object is left alone


def test_an_impaired_link_takes_its_own_copy_of_the_params() -> None:
    params = LinkParams(loss=0.5)
    sw = VnetSwitch(seed=1)
    one, two = (ImpairedLink(sw.add_interface(n), params, seed=1) for n in "ab")
    one.link.up = False
    assert two.link.up and params.up and two.link == params
