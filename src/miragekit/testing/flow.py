"""In-memory FLOW pairs and the FLOW conformance suite (public facade)."""

from ._flow import MemoryFlow as MemoryFlow
from ._flow import flow_pair as flow_pair
from ._flow_checks import FLOW_CHECKS as FLOW_CHECKS
from ._flow_checks import FlowCheckFailed as FlowCheckFailed
from ._flow_checks import FlowPairFactory as FlowPairFactory
from ._flow_checks import check_flow as check_flow

__all__ = [
    "FLOW_CHECKS",
    "FlowCheckFailed",
    "FlowPairFactory",
    "MemoryFlow",
    "check_flow",
    "flow_pair",
]
