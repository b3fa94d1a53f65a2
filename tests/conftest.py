"""Fixtures shared by several test folders, and the hypothesis profiles.

``ci`` (chosen when ``CI`` is set, as ``.ci/run``'s environment has it, or with
``HYPOTHESIS_PROFILE=ci``): no deadline (scapy and a loaded 2-core machine make single
examples slow now and then), no example database, derandomized, so that a run is
reproducible from the commit alone; a failure prints the blob that replays it
(``@reproduce_failure``). ``dev`` (the default elsewhere): random, still no deadline,
the blob printed, the local database kept, so new inputs are tried on every run.
"""

from __future__ import annotations

import os

from hypothesis import settings
from tests.kernelnet import knet as knet

settings.register_profile("ci", deadline=None, print_blob=True, database=None, derandomize=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
