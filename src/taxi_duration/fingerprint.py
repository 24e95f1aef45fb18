"""A trained model's fingerprint: the data, parameters and code it came from.

Two runs with the same fingerprint train the same model, so the second registers no new
version (tracking/runs.py looks the fingerprint up among the registered versions).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).parent


@functools.cache
def code_version() -> str:
    """The sha256 of the package's Python source: any change to the code changes it (the
    same from a checkout, with uncommitted edits, and from an installed wheel)."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE_DIR).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def model_fingerprint(data_digests: Mapping[str, str], params: Mapping[str, Any], code: str) -> str:
    """The sha256 of a run's month digests (by context: training, validation), its
    parameters (the model configuration, color and months) and its code version."""
    payload = {"data": dict(data_digests), "params": dict(params), "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
