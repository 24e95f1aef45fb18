"""Free loopback ports for the servers tests start.

A port is chosen below the kernel's ephemeral range (32768-60999 on Linux), in a block of
its own per pytest-xdist worker: a port the kernel hands out for ``bind(0)`` or for an
outgoing connection's source port can be taken by another test's client between the probe
and the server's own bind; one below that range cannot, and the workers never pick each
other's. A random start within the block keeps two test sessions on one machine apart.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

FIRST_PORT = 20_000
BLOCK = 1_000  # ports per xdist worker: 12 workers fit below the ephemeral range


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw3"
    return int(name.removeprefix("gw")) if name.removeprefix("gw").isdigit() else 0


_BASE = FIRST_PORT + BLOCK * _worker_index()
_NEXT = itertools.cycle(range(random.randrange(BLOCK), random.randrange(BLOCK) + BLOCK))


def free_port() -> int:
    """A loopback port nothing listens on, not handed out before in this process."""
    for _ in range(BLOCK):
        port = _BASE + next(_NEXT) % BLOCK
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {_BASE}..{_BASE + BLOCK - 1}")
