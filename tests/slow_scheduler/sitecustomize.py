"""Loaded by the Python of a test's ``dask scheduler`` (this folder on its PYTHONPATH only).

The scheduler's first import of taxi_duration stalls its event loop for
TAXI_DURATION_TEST_IMPORT_STALL seconds, as a heavy import does on a loaded machine
(tests/integration/test_dask_scheduler_stall.py).
"""

import importlib.abc
import os
import sys
import time
from pathlib import Path


class _StallOnce(importlib.abc.MetaPathFinder):
    stalled = False

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "taxi_duration" and not _StallOnce.stalled:
            _StallOnce.stalled = True
            time.sleep(float(os.environ["TAXI_DURATION_TEST_IMPORT_STALL"]))


if b"dask_scheduler" in Path("/proc/self/cmdline").read_bytes():
    sys.meta_path.insert(0, _StallOnce())
