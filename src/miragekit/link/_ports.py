"""Outside devices as ports of a :class:`VnetSwitch`: TAP, VXLAN, QEMU's socket netdevs.

Why: the switch's learning, partitions and seeded impairments are worth having between
real hosts (network namespaces, containers, virtual machines), not only between stacks in
one process. A port is any :class:`FrameNetwork` device bridged to one switch interface:
what the device receives enters the switch on that interface's link, what the switch
forwards to the interface goes out of the device. The switch treats the device as a wire,
so the interface accepts frames up to 64 KiB and the hosts at the ends enforce their MTU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..result import Error, NetworkError, Ok, Unknown
from ._frame import FrameNetwork
from ._impair import LinkParams
from ._pool import MAX_MTU
from ._qemu import QemuDgramNetif, QemuStreamNetif
from ._tap import TapNetif
from ._vswitch import VnetIf, VnetSwitch
from ._vxlan import VxlanNetif, parse_vxlan_spec

PORT_KINDS = ("tap", "vxlan", "qemu-stream", "qemu-dgram")


@dataclass(frozen=True, slots=True)
class PortSpec:
    """``NAME=KIND:ARG[,key=value]...`` from the command line, checked but not opened."""

    name: str
    kind: str
    arg: str
    options: tuple[tuple[str, str], ...] = ()

    def option(self, key: str) -> str | None:
        return dict(self.options).get(key)


_KEYS = {"tap": ("netns",), "qemu-dgram": ("remote",), "qemu-stream": ()}


def parse_port_spec(text: str) -> PortSpec:
    """Parse ``NAME=KIND:SPEC``; raises ValueError naming what is wrong.

    Kinds: ``tap:IFNAME[,netns=NS]``, ``vxlan:VNI@LOCAL[:PORT],REMOTE...`` (as
    ``miragekit run --net vxlan:``), ``qemu-stream:PATH``, ``qemu-dgram:PATH[,remote=PATH]``.
    """
    name, eq, rest = text.partition("=")
    if not eq or not name:
        raise ValueError(f"port {text!r}: expected NAME=KIND:SPEC")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"port {text!r}: name {name!r} may hold letters, digits, - and _")
    kind, colon, arg = rest.partition(":")
    if not colon or kind not in PORT_KINDS:
        raise ValueError(f"port {text!r}: kind {kind!r} is not one of {', '.join(PORT_KINDS)}")
    if kind == "vxlan":
        parse_vxlan_spec(arg)  # its own messages name the spec
        return PortSpec(name, kind, arg)
    first, *items = arg.split(",")
    if not first:
        raise ValueError(f"port {text!r}: {kind} needs a {'name' if kind == 'tap' else 'path'}")
    opts: list[tuple[str, str]] = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in _KEYS[kind] or not value:
            known = ", ".join(f"{k}=..." for k in _KEYS[kind]) or "none"
            raise ValueError(f"port {text!r}: option {item!r} (known: {known})")
        opts.append((key, value))
    if kind == "tap" and len(first.encode()) > 15:
        raise ValueError(f"port {text!r}: interface name {first!r} is longer than 15 bytes")
    return PortSpec(name, kind, first, tuple(opts))


async def open_port(spec: PortSpec) -> Ok[FrameNetwork] | Error[NetworkError]:
    """Open the device ``spec`` names (creating a TAP or a socket path as needed)."""
    res: Ok[Any] | Error[NetworkError]
    if spec.kind == "tap":
        res = await TapNetif.connect(spec.arg, netns=spec.option("netns"), offload=True)
    elif spec.kind == "vxlan":
        res = await VxlanNetif.connect(parse_vxlan_spec(spec.arg))
    elif spec.kind == "qemu-stream":
        res = await QemuStreamNetif.connect(spec.arg, mtu=MAX_MTU)
    else:
        res = await QemuDgramNetif.connect(spec.arg, remote=spec.option("remote"), mtu=MAX_MTU)
    match res:
        case Ok(dev):
            return Ok(dev)
        case Error(Unknown(msg)):
            return Error(Unknown(f"port {spec.name} ({spec.kind}:{spec.arg}): {msg}"))
        case err:
            return err


def bridge(switch: VnetSwitch, name: str, device: FrameNetwork) -> VnetIf:
    """Plug ``device`` into ``switch`` as interface ``name``; returns the interface.

    The interface takes the device's MAC only as its own label: the switch learns the
    hosts behind the port from the source addresses of their frames. A TAP device opened
    with ``offload=True`` gets a :class:`TapBridge` (see :func:`tap_bridge`).
    """
    port = switch.add_interface(name, mac=device.mac(), mtu=MAX_MTU)
    if isinstance(device, TapNetif) and device.offload_capable:
        port._bridge = TapBridge(port, device)
    else:
        device.set_receiver(port.send)
        port.set_receiver(device.send)
    return port


class OffloadFrame(bytes):
    """A frame that keeps the virtio-net header its TAP device read it with: a TCP segment
    of up to 64 KiB (GSO) or a frame whose checksum is left to the receiver."""

    vnet: bytes


class TapBridge:
    """A TAP port that can pass the kernel's offloaded frames through whole.

    Why: at MTU 1500 Python moves too few frames per second to carry a kernel's TCP at
    full speed (docs/design.md); with offloads on, the kernel hands over segments of up
    to 64 KiB with the checksum left to do, and the TAP at the other end takes them with
    the same header, so one frame through the switch carries ~45 wire frames. Only sound
    when every port is such a TAP and no link is impaired (an impairment acts on real
    frames): :func:`set_offload` is the caller's switch.
    """

    def __init__(self, port: VnetIf, tap: TapNetif) -> None:
        self.port = port
        self.tap = tap
        self.offload = False
        tap.set_receiver(port.send)
        port.set_receiver(self._out)

    def set_offload(self, on: bool) -> None:
        if on == self.offload:
            return
        self.offload = on
        if on:
            self.tap.set_receiver_meta(self._in)
        else:
            self.tap.set_receiver(self.port.send)

    def _in(self, frame: memoryview, flags: int) -> None:
        hdr = self.tap.vnet_header()
        if not (hdr[0] or hdr[1]):  # no flags, not GSO: a plain frame
            self.port.send(frame)
            return
        f = OffloadFrame(frame)
        f.vnet = hdr
        self.port._send(f)

    def _out(self, frame: memoryview) -> None:
        obj = frame.obj
        if type(obj) is OffloadFrame and frame.nbytes == len(obj):
            self.tap.send_vnet(obj.vnet, frame)
        else:
            self.tap.send(frame)


def tap_bridge(port: VnetIf) -> TapBridge | None:
    """The :class:`TapBridge` behind ``port``, if it is an offload-capable TAP port (kept
    on the port: a compiled VnetIf cannot be weakly referenced)."""
    bridge = port._bridge
    return bridge if isinstance(bridge, TapBridge) else None


def parse_link_settings(text: str) -> dict[str, Any]:
    """``key=value,...`` for a :class:`LinkParams` (``loss=0.01,latency=0.005,up=false``).

    Values are numbers, ``none`` (for ``rate``) or ``true``/``false``; a rate may end in
    ``k``, ``M`` or ``G`` (bits/s). Raises ValueError naming the item at fault.
    """
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"link setting {item!r}: expected KEY=VALUE")
        out[key] = _value(key, value.strip())
    check_link_settings(out)
    return out


_FIELDS = {f.name: f for f in dataclasses.fields(LinkParams) if f.init}


def _value(key: str, text: str) -> Any:
    f = _FIELDS.get(key)
    if f is None:
        raise ValueError(f"link setting {key!r} is unknown (known: {', '.join(_FIELDS)})")
    low = text.lower()
    if key in ("up", "ecn"):
        if low not in ("true", "false", "1", "0", "on", "off"):
            raise ValueError(f"link setting {key}={text!r}: expected true or false")
        return low in ("true", "1", "on")
    if key == "rate" and low == "none":
        return None
    scale = 1.0
    if key == "rate" and low[-1:] in ("k", "m", "g"):
        scale = {"k": 1e3, "m": 1e6, "g": 1e9}[low[-1]]
        low = low[:-1]
    try:
        v = float(low) * scale
    except ValueError:
        raise ValueError(f"link setting {key}={text!r}: not a number") from None
    if key == "queue_frames":
        if not v.is_integer():
            raise ValueError(f"link setting {key}={text!r}: not a whole number")
        return int(v)
    return v


def check_link_settings(settings: dict[str, Any]) -> None:
    """Raise ValueError unless ``settings`` would be accepted by :func:`apply_link_settings`."""
    trial = LinkParams()
    for key, value in settings.items():
        if key not in _FIELDS:
            raise ValueError(f"link setting {key!r} is unknown (known: {', '.join(_FIELDS)})")
        if key == "queue_frames" and isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            setattr(trial, key, value)
        except (TypeError, ValueError) as e:
            raise ValueError(str(e)) from None


def apply_link_settings(link: LinkParams, settings: dict[str, Any]) -> None:
    """Set ``settings`` on ``link`` all at once, or (on a ValueError) none of them."""
    check_link_settings(settings)
    for key, value in settings.items():
        if key == "queue_frames" and isinstance(value, float):
            value = int(value)
        setattr(link, key, value)


def link_settings(link: LinkParams) -> dict[str, Any]:
    """``link``'s parameters as a dict (what the control socket reports)."""
    return {k: getattr(link, k) for k in _FIELDS}
