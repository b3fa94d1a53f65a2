"""Fixtures shared by several test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.kernelnet import KernelNet, kernel_net


@pytest.fixture
def knet() -> Iterator[KernelNet]:
    """A TAP device and a fresh ``mk-`` namespace for its kernel side (see tests/kernelnet)."""
    with kernel_net() as k:
        yield k
