"""Parts of the service that set its speed, without a model or a server.

The listening socket: with Nagle's algorithm on, a response's body (written after its
headers) waited for the client's delayed ACK, 40 ms on every answer, four times MLflow's own
scoring server. The prediction: a version of ours is asked past the pyfunc's schema
enforcement (the trips are checked already), any other through its pyfunc.
"""

from __future__ import annotations

import socket
from typing import Any

import pandas as pd

from taxi_duration.serve import OUR_PYFUNC, _bound_socket, predictor


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


class _Pyfunc:
    """A loaded pyfunc's surface: ``predict`` and ``unwrap_python_model``."""

    def __init__(self, python_model: Any) -> None:
        self.python_model = python_model

    def predict(self, trips: pd.DataFrame) -> list[str]:
        return ["through the pyfunc"]

    def unwrap_python_model(self) -> Any:
        if self.python_model is None:
            raise TypeError("not a Python model")
        return self.python_model


def _python_model(name: str) -> Any:
    def predict(self: Any, context: Any, trips: pd.DataFrame) -> list[str]:
        return ["past the pyfunc"]

    return type(name, (), {"predict": predict})()


def test_a_version_of_ours_is_asked_past_the_pyfuncs_schema_enforcement() -> None:
    trips = pd.DataFrame({"trip_distance": [2.5]})
    assert predictor(_Pyfunc(_python_model(OUR_PYFUNC)))(trips) == ["past the pyfunc"]
    assert predictor(_Pyfunc(_python_model("SomeoneElses")))(trips) == ["through the pyfunc"]
    assert predictor(_Pyfunc(None))(trips) == ["through the pyfunc"]
