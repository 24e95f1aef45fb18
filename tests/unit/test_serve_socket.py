"""The service's listening socket: each connection it accepts sends small answers at once.

With Nagle's algorithm on, a response's body (written after its headers) waited for the
client's delayed ACK: 40 ms on every answer, four times MLflow's own scoring server.
"""

from __future__ import annotations

import socket

from taxi_duration.serve import _bound_socket


def test_accepted_connections_have_nagle_off_and_say_tcp() -> None:
    listener = _bound_socket("127.0.0.1", 0)
    try:
        # asyncio sets TCP_NODELAY itself only on a socket whose protocol is TCP.
        assert listener.proto == socket.IPPROTO_TCP
        with socket.create_connection(listener.getsockname()[:2], timeout=10):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
