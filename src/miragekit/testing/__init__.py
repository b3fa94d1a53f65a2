"""Testing kits: in-memory flow pairs and conformance suites for FLOW, BLOCK, KV_RO, FS
and NETWORK.

Each suite is ``await check_x(factory, ..., only=None, timeout=60)``, raising one
:class:`ConformanceError` naming the failed check; see ``docs/testing.md``.
"""

from ._conformance import ConformanceError as ConformanceError
from ._network import NETWORK_CHECKS as NETWORK_CHECKS
from ._network import check_network_pair as check_network_pair
from .block import BLOCK_CHECKS as BLOCK_CHECKS
from .block import READ_ONLY_BLOCK_CHECKS as READ_ONLY_BLOCK_CHECKS
from .block import check_block as check_block
from .block import check_read_only_block as check_read_only_block
from .flow import FLOW_CHECKS as FLOW_CHECKS
from .flow import FlowCheckFailed as FlowCheckFailed
from .flow import MemoryFlow as MemoryFlow
from .flow import check_flow as check_flow
from .flow import flow_pair as flow_pair
from .fs import FS_CHECKS as FS_CHECKS
from .fs import check_fs as check_fs
from .kv import KV_RO_CHECKS as KV_RO_CHECKS
from .kv import check_kv_ro as check_kv_ro

__all__ = [
    "BLOCK_CHECKS",
    "FLOW_CHECKS",
    "FS_CHECKS",
    "KV_RO_CHECKS",
    "NETWORK_CHECKS",
    "READ_ONLY_BLOCK_CHECKS",
    "ConformanceError",
    "FlowCheckFailed",
    "MemoryFlow",
    "check_block",
    "check_flow",
    "check_fs",
    "check_kv_ro",
    "check_network_pair",
    "check_read_only_block",
    "flow_pair",
]
