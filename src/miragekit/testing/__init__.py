"""Testing kits: in-memory flow pairs and conformance suites for FLOW, BLOCK, KV_RO, FS.

Each suite is a plain async function taking a factory for the implementation under
test; run them from any test framework (see ``tests/`` for how we run them).
"""

from .block import BLOCK_CHECKS as BLOCK_CHECKS
from .block import READ_ONLY_BLOCK_CHECKS as READ_ONLY_BLOCK_CHECKS
from .block import check_block as check_block
from .block import check_read_only_block as check_read_only_block
