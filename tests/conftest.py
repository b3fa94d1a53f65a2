"""Fixtures shared by several test folders."""

from __future__ import annotations

from tests.kernelnet import knet as knet
