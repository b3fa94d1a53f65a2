"""Fixtures for the kernel tests: a TAP and a ``mk-`` namespace, IPv4-only or IPv6."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.ipstack.kernelnet import KernelNet, kernel_net

KERNEL_IP = "10.77.0.1"
KERNEL_IP6 = "fd00:77::1"


@pytest.fixture
def knet() -> Iterator[KernelNet]:
    """The kernel side at 10.77.0.1/24, IPv6 off."""
    with kernel_net([f"{KERNEL_IP}/24"], ipv6=False) as k:
        yield k


@pytest.fixture
def knet6() -> Iterator[KernelNet]:
    """The kernel side at fd00:77::1/64 (and its link-local address), IPv6 on."""
    with kernel_net([f"{KERNEL_IP6}/64"], ipv6=True) as k:
        yield k
