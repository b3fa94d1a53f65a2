"""Testing kits: in-memory flow pairs and conformance suites for FLOW, BLOCK, KV_RO, FS.

Each suite is a plain async function taking a factory for the implementation under
test; run them from any test framework (see ``tests/`` for how we run them).
"""

from .fs import FS_CHECKS as FS_CHECKS
from .fs import check_fs as check_fs
