"""``taxi-duration serve``: a color's champion over HTTP, following the alias as it moves.

It speaks MLflow's scoring protocol, so a client of ``mlflow models serve`` works unchanged:
``POST /invocations`` with ``dataframe_records`` or ``dataframe_split`` answers
``{"predictions": [...]}``; ``GET /ping`` is 200 once a version is served. Besides, ``POST
/trip`` takes one trip as a JSON object and ``GET /health`` tells the version served, where
the alias points and the last failure. Each answer names the version that gave it: the
``X-Model-Version`` header, and ``model_version`` in a JSON body.

A background thread asks the registry where ``@champion`` points every
``TAXI_DURATION_SERVE_POLL_SECONDS``. A new champion is loaded beside the served one and
must answer a fixed trip before it replaces it, in one assignment of an immutable pair: each
request reads the pair once, so a request in flight finishes on the version that took it.
A version that fails to load or to answer is not switched to; the old one keeps serving.
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import logging
import math
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taxi_duration.errors import InvalidInputError, ServeError, TaxiDurationError
from taxi_duration.promote import CHAMPION
from taxi_duration.settings import Settings
from taxi_duration.stack.config import LOOPBACK, is_loopback
from taxi_duration.tracking import registry
from taxi_duration.trip_requests import (
    SMOKE_TRIP,
    checked_trips,
    trip_from_request,
    trips_from_request,
)

if TYPE_CHECKING:
    import uvicorn

    from taxi_duration.specs import ServeSpec

logger = logging.getLogger(__name__)

VERSION_HEADER = "X-Model-Version"
# A version that failed is tried again after this long, unless the alias moves first: a
# registry or artifact store that was down may be back, a broken model will fail again.
RETRY_FAILED_SECONDS = 60.0


@dataclass(frozen=True)
class Served:
    """A registered version, its loaded pyfunc and how it predicts checked trips: replaced
    whole, never changed."""

    version: str
    model: Any
    predict: Callable[[pd.DataFrame], Any]


# The pyfunc class of every version ``tracking`` logs (pyfunc_model.py).
OUR_PYFUNC = "TripDurationPyfunc"


def predictor(model: Any) -> Callable[[pd.DataFrame], Any]:
    """A version's prediction for trips ``trip_requests`` has checked. For a version of
    ours, its model's own, past the pyfunc's schema enforcement: that checks and converts
    every column again, a fifth of a one-trip request's CPU (8.4 instead of 10.0 ms in one
    process). Any other version: the pyfunc's."""
    try:
        python_model = model.unwrap_python_model()
    except Exception:  # not a Python model: MLflow's flavours raise their own error
        return model.predict  # type: ignore[no-any-return]
    if type(python_model).__name__ != OUR_PYFUNC:
        return model.predict  # type: ignore[no-any-return]
    return lambda trips: python_model.predict(None, trips)


@dataclass(frozen=True)
class Failure:
    """Why a version is not served (or the registry could not be read), and when."""

    message: str
    at: float


class ChampionFollower:
    """Which version answers: the champion, once loaded and smoke-tested."""

    def __init__(self, settings: Settings, color: str) -> None:
        self.settings = settings
        self.color = color
        self.model_name = settings.registered_model(color)
        self.served: Served | None = None
        self.champion: str | None = None  # where the alias pointed at the last poll
        self.last_error: Failure | None = None
        self._failed: dict[str, float] = {}  # version -> when it failed (monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Look at the alias once; load, smoke-test and swap in a champion not yet served."""
        try:
            champion = registry.champion_version(self.settings, self.color)
        except TaxiDurationError as error:  # the registry is down: keep serving what we have
            self._fail(f"registry not read: {error}")
            return
        self.champion = champion
        served = self.served
        if champion is None or (served is not None and served.version == champion):
            return
        failed = self._failed.get(champion)
        if failed is not None and time.monotonic() - failed < RETRY_FAILED_SECONDS:
            return
        started = time.perf_counter()
        try:
            model = registry.load_version(self.settings, champion, self.color)
            predict = predictor(model)
            _smoke_test(predict)
        except Exception as error:  # whatever a version does wrong, the served one stays
            self._failed[champion] = time.monotonic()
            kept = f"version {served.version} still serves" if served else "none serves"
            self._fail(f"version {champion} is not served ({kept}): {_one_line(error)}")
            return
        self.served = Served(champion, model, predict)  # the swap: one assignment
        settle_memory()
        self._failed.pop(champion, None)
        logger.info(
            "serving %s version %s (was %s), loaded and tested in %.1f s",
            self.model_name,
            champion,
            served.version if served else "none",
            time.perf_counter() - started,
        )

    def _fail(self, message: str) -> None:
        logger.error("%s", message)
        self.last_error = Failure(message, time.time())

    def start(self) -> None:
        """Poll in a background thread until ``stop``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="champion-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.serve_poll_seconds):
            try:
                self.poll()
            except Exception as error:  # the loop must outlive any one poll
                self._fail(f"poll failed: {_one_line(error)}")

    def health(self) -> dict[str, Any]:
        served = self.served
        if served is None:
            status = "no champion" if self.champion is None else "champion not served"
        else:
            status = "serving" if served.version == self.champion else "champion not served"
        error = self.last_error
        return {
            "status": status,
            "model_name": self.model_name,
            "model_version": served.version if served else None,
            "champion": self.champion,
            "last_error": None
            if error is None
            else {"message": error.message, "at": _iso_time(error.at)},
            "poll_seconds": self.settings.serve_poll_seconds,
        }

    def unavailable_message(self) -> str:
        where = f"{self.model_name}@{CHAMPION} at {self.settings.tracking_uri}"
        if self.champion is None:
            reason = f"no champion yet: {where} names no version"
        else:
            error = self.last_error.message if self.last_error else "loading"
            reason = f"champion version {self.champion} of {where} is not served: {error}"
        return f"{reason} (asked every {self.settings.serve_poll_seconds:g} s)"


def settle_memory() -> None:
    """What is loaded now (libraries, the served version) stays: collected once, then kept
    out of the garbage collector's walks. Python's full collection walks every object, about
    340,000 with a version loaded: 100-400 ms holding the GIL on a loaded 2-core machine,
    every few hundred requests, the slowest answers. The last version's objects are freed
    by this collection once no request holds them."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _smoke_test(predict: Callable[[pd.DataFrame], Any]) -> None:
    """A version must predict a duration for a fixed, ordinary trip before it serves."""
    answer = np.asarray(
        predict(checked_trips({k: [v] for k, v in SMOKE_TRIP.items()}, 1)), dtype=float
    )
    if answer.shape != (1,) or not math.isfinite(answer[0]):
        raise ServeError(f"it answered {answer.tolist()!r} for the smoke trip, not a duration")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def _iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _json(status: int, body: dict[str, Any], version: str | None) -> Response:
    headers = {VERSION_HEADER: version} if version is not None else None
    return Response(json.dumps(body), status, headers, media_type="application/json")


def _error(status: int, code: str, message: str, version: str | None) -> Response:
    """MLflow's error body: ``error_code`` and a one-line ``message``."""
    return _json(status, {"error_code": code, "message": message}, version)


def _answer(served: Served, body: bytes, parse: Callable[[bytes], pd.DataFrame]) -> list[Any]:
    trips = parse(body)  # InvalidInputError before anything is predicted
    predicted = np.asarray(served.predict(trips), dtype=np.float64)
    # JSON null where the model has no duration (an unknown zone), never NaN.
    return [None if not math.isfinite(value) else value for value in predicted.tolist()]


@dataclass(frozen=True)
class Credentials:
    """The user and password a prediction must come with (HTTP basic auth)."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def of(cls, settings: Settings, host: str = LOOPBACK) -> Credentials | None:
        """The MLflow user's, when ``serve_auth`` is on (unset: when ``host`` is not a
        loopback address); a missing one is a bad setting."""
        asked_by = (
            "TAXI_DURATION_SERVE_AUTH is on"
            if settings.serve_auth
            else f"--host {host} is off loopback (TAXI_DURATION_SERVE_AUTH=false serves anyone)"
            if settings.serve_auth is None and not is_loopback(host)
            else None
        )
        if asked_by is None:
            return None
        password = settings.mlflow_tracking_password
        if not settings.mlflow_tracking_username or password is None:
            raise InvalidInputError(
                f"{asked_by}, so the service asks for credentials: set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the MLflow user's)"
            )
        return cls(settings.mlflow_tracking_username, password.get_secret_value())

    def admit(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries these credentials."""
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.username}:{self.password}".encode()
        return secrets.compare_digest(given, expected)


def create_app(follower: ChampionFollower, credentials: Credentials | None = None) -> Starlette:
    """The service's routes over ``follower``, which the app starts and stops. With
    ``credentials``, a prediction without them is refused (401); ``/ping`` and ``/health``
    stay open, for the stack's and a load balancer's health checks."""

    async def predict(
        request: Request,
        parse: Callable[[bytes], pd.DataFrame],
        answer: Callable[[list[Any]], dict[str, Any]],
    ) -> Response:
        if credentials is not None and not credentials.admit(request.headers.get("authorization")):
            refused = _error(
                401,
                "UNAUTHENTICATED",
                "credentials required: HTTP basic auth with the MLflow user and password",
                None,
            )
            refused.headers["WWW-Authenticate"] = 'Basic realm="taxi-duration"'
            return refused
        served = follower.served  # read once: this request stays on this version
        if served is None:
            return _error(503, "TEMPORARILY_UNAVAILABLE", follower.unavailable_message(), None)
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return _error(
                415,
                "BAD_REQUEST",
                f"content type {content_type or 'none'!r} is not JSON: "
                "send Content-Type: application/json",
                served.version,
            )
        body = await request.body()
        try:
            predictions = await run_in_threadpool(_answer, served, body, parse)
        except InvalidInputError as error:
            return _error(400, "BAD_REQUEST", str(error), served.version)
        except Exception as error:
            logger.exception("version %s failed to predict", served.version)
            return _error(
                500,
                "INTERNAL_ERROR",
                f"version {served.version} failed to predict: {_one_line(error)}",
                served.version,
            )
        return _json(200, {**answer(predictions), "model_version": served.version}, served.version)

    async def invocations(request: Request) -> Response:
        return await predict(request, trips_from_request, lambda p: {"predictions": p})

    async def trip(request: Request) -> Response:
        return await predict(request, trip_from_request, lambda p: {"duration_minutes": p[0]})

    async def ping(request: Request) -> Response:
        served = follower.served
        if served is None:
            return _error(503, "TEMPORARILY_UNAVAILABLE", follower.unavailable_message(), None)
        return Response("\n", 200, {VERSION_HEADER: served.version}, "application/json")

    async def health(request: Request) -> Response:
        report = follower.health()
        return _json(200 if report["model_version"] else 503, report, report["model_version"])

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(follower.poll)  # serve the champion from the first request
        follower.start()
        try:
            yield
        finally:
            follower.stop()

    return Starlette(
        routes=[
            Route("/invocations", invocations, methods=["POST"]),
            Route("/trip", trip, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


class PredictionService:
    """The app on uvicorn, on a socket bound before it starts (a taken port is one line)."""

    def __init__(self, spec: ServeSpec, settings: Settings, access_log: bool = False) -> None:
        import uvicorn  # here: the CLI's other commands never load it

        credentials = Credentials.of(settings, spec.host)  # missing ones: an error, unbound
        self.follower = ChampionFollower(settings, spec.color)
        self.socket = _bound_socket(spec.host, spec.port)
        config = uvicorn.Config(
            create_app(self.follower, credentials),
            log_level="info" if access_log else "warning",
            access_log=access_log,
            lifespan="on",
        )
        self.server: uvicorn.Server = uvicorn.Server(config)
        host, port = self.socket.getsockname()[:2]
        self.url = f"http://{host}:{port}"

    def run(self) -> None:
        """Serve until stopped (SIGINT, SIGTERM or ``stop``)."""
        logger.info("serving %s@%s on %s", self.follower.model_name, CHAMPION, self.url)
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        self.server.should_exit = True


def _bound_socket(host: str, port: int) -> socket.socket:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise InvalidInputError(f"host {host!r} is not an address: {error.strerror}") from None
    # The protocol as getaddrinfo gives it (TCP), not 0: asyncio turns Nagle's algorithm off
    # (TCP_NODELAY) only on a connection whose socket says TCP. With it on, a response's body,
    # written after its headers, waited for the client's delayed ACK: 40 ms on every answer.
    sock = socket.socket(info[0], socket.SOCK_STREAM, info[2])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by each connection
    try:
        sock.bind(info[4])
    except OSError as error:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port}: {error.strerror or error} (give another --port)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
