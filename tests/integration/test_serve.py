"""``taxi-duration serve``: a real service on loopback over a store of trained versions.

One store for the module (two linear versions trained on generated months, and two broken
ones registered beside them); each test starts its own service in a thread, on a free port,
polling the alias every 0.2 s.
"""

from __future__ import annotations

import gc
import json
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from mlflow.tracking import MlflowClient
from ports import free_port
from tlc_samples import make_trips

from taxi_duration.flows.train import train
from taxi_duration.months import Month
from taxi_duration.serve import VERSION_HEADER, PredictionService
from taxi_duration.settings import Settings
from taxi_duration.specs import ServeSpec, TrainSpec

pytestmark = pytest.mark.slow
NAME = "nyc-taxi-duration-green"
POLL_SECONDS = 0.2
# How long a promotion may take to reach the answers: a few polls and a load of the version.
SWITCH_SECONDS = 15.0
TRIP = {
    "lpep_pickup_datetime": "2023-03-01T08:15:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 2.5,
}


@dataclass(frozen=True)
class Store:
    settings: Settings
    client: MlflowClient
    unloadable: str  # a version whose pickle is garbage
    no_answer: str  # a version that loads but predicts no duration


def _register_copy(
    client: MlflowClient, folder: Path, version: str, break_it: Callable[[Path], None]
) -> str:
    """A new version of NAME: version's files, broken by ``break_it``."""
    copy = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version}", dst_path=folder))
    break_it(copy / "artifacts" / "model.pkl")
    return str(client.create_model_version(NAME, str(copy)).version)


def _garbage(pickled: Path) -> None:
    pickled.write_bytes(b"not a pickle")


def _predicts_nothing(pickled: Path) -> None:
    model = pickle.loads(pickled.read_bytes())
    model.estimator.intercept_ = np.nan  # every prediction NaN: no duration for any trip
    pickled.write_bytes(pickle.dumps(model))


@pytest.fixture(scope="module")
def store(
    prefect_api: None, synthetic_data_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "TAXI_DURATION_MODEL_NAME"):
            patch.delenv(name, raising=False)
        patch.chdir(root)
        patch.setenv("TAXI_DURATION_DATA_URL", synthetic_data_url)
        patch.setenv("TAXI_DURATION_DATA_DIR", str(root / "data"))
        patch.setenv("TAXI_DURATION_MLFLOW_DIR", str(root / "mlflow"))
        # Linear models: the cheapest to train. v1 the champion, v2 (worse) the challenger.
        first = train(TrainSpec.parse(year=2023, month=1, model="linear", features="pu_do"))
        second = train(TrainSpec.parse(year=2023, month=1, model="linear", features="separate"))
        assert (first.model_version, second.model_version) == ("1", "2")
        settings = Settings(serve_poll_seconds=POLL_SECONDS)
        client = MlflowClient(
            tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
        )
        mlflow.set_tracking_uri(settings.tracking_uri)
        unloadable = _register_copy(client, root / "v3", "1", _garbage)
        no_answer = _register_copy(client, root / "v4", "1", _predicts_nothing)
        yield Store(settings, client, unloadable, no_answer)


def _champion(store: Store, version: str, name: str = NAME) -> None:
    store.client.set_registered_model_alias(name, "champion", version)


@pytest.fixture
def serve(store: Store) -> Iterator[Callable[..., str]]:
    """``serve(color)``: start a service in a thread and return its base URL."""
    services: list[tuple[PredictionService, threading.Thread]] = []

    def start(color: str = "green") -> str:
        spec = ServeSpec(color=color, host="127.0.0.1", port=free_port())
        service = PredictionService(spec, store.settings)
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        services.append((service, thread))
        deadline = time.monotonic() + 60
        while not service.server.started:
            assert thread.is_alive(), "the service stopped while starting"
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.05)
        return service.url

    yield start
    for service, thread in services:
        service.stop()
        thread.join(timeout=30)


def _post(url: str, body: Any, path: str = "/invocations") -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def _records(trips: pd.DataFrame) -> list[dict[str, Any]]:
    """Trips as JSON objects: times in ISO 8601, nulls for missing values."""
    return [
        {
            key: (value.isoformat() if isinstance(value, pd.Timestamp) else value)
            for key, value in row.items()
            if not (isinstance(value, float) and np.isnan(value))
        }
        for row in trips.to_dict(orient="records")
    ]


def _wait_for(check: Callable[[], bool], what: str, seconds: float = SWITCH_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds:g} s: {what}"
        time.sleep(0.1)


def test_without_a_champion_it_answers_503_until_one_is_promoted(
    store: Store, serve: Callable[..., str]
) -> None:
    url = serve("yellow")  # no yellow model in the store
    answer = _post(url, {"dataframe_records": [TRIP]})
    assert answer.status_code == 503
    message = answer.json()["message"]
    assert "no champion yet: nyc-taxi-duration-yellow@champion" in message
    assert "\n" not in message
    assert VERSION_HEADER not in answer.headers
    assert httpx.get(f"{url}/ping").status_code == 503
    health = httpx.get(f"{url}/health")
    assert (health.status_code, health.json()["status"]) == (503, "no champion")

    # A yellow champion appears (green v1's files): served without a restart.
    source = store.client.get_model_version(NAME, "1").source
    yellow = "nyc-taxi-duration-yellow"
    store.client.create_registered_model(yellow)
    version = str(store.client.create_model_version(yellow, source).version)
    _champion(store, version, yellow)
    _wait_for(lambda: httpx.get(f"{url}/ping").status_code == 200, "the first champion served")
    answer = _post(url, {"dataframe_records": [TRIP]})
    assert answer.status_code == 200, answer.text
    assert answer.headers[VERSION_HEADER] == version
    # What the version loaded is kept out of the collector's full walks (a slow answer each).
    assert gc.get_freeze_count() > 100_000


def test_predictions_are_the_pyfuncs_and_name_their_version(
    store: Store, serve: Callable[..., str]
) -> None:
    _champion(store, "1")
    url = serve()
    trips = make_trips("green", Month(2023, 3), rows=40)
    trips["PULocationID"] = trips["PULocationID"].astype("float64")
    trips.loc[3, "PULocationID"] = np.nan  # an unknown zone: null, as in batch scoring
    expected = np.asarray(
        mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(trips), dtype=np.float64
    )

    records = _post(url, {"dataframe_records": _records(trips)})
    split = json.loads(trips.to_json(orient="split", date_format="iso", date_unit="us"))
    split_answer = _post(url, {"dataframe_split": split})
    for answer in (records, split_answer):
        assert answer.status_code == 200, answer.text
        assert answer.headers[VERSION_HEADER] == answer.json()["model_version"] == "1"
        predicted = np.array(answer.json()["predictions"], dtype=np.float64)
        np.testing.assert_array_equal(predicted, expected)
    assert records.json()["predictions"][3] is None

    one = _post(url, _records(trips.head(1))[0], path="/trip")
    assert one.status_code == 200, one.text
    assert one.json() == {"duration_minutes": expected[0], "model_version": "1"}
    # MLflow's own client of `mlflow models serve` (a DataFrame, sent as dataframe_split).
    port = int(url.rsplit(":", 1)[1])
    mlflow_answer = ScoringServerClient("127.0.0.1", port).invoke(trips.head(5))
    np.testing.assert_array_equal(
        np.array(mlflow_answer.get_predictions(), dtype=np.float64).ravel(), expected[:5]
    )
    health = httpx.get(f"{url}/health").json()
    assert (health["status"], health["model_version"], health["champion"]) == ("serving", "1", "1")


_BAD_REQUESTS: list[tuple[Any, str]] = [
    ({"dataframe_records": [{k: v for k, v in TRIP.items() if "pickup" not in k}]}, "pickup"),
    ({"dataframe_records": [{k: v for k, v in TRIP.items() if "dist" not in k}]}, "trip_distance"),
    ({"dataframe_records": [{**TRIP, "PULocationID": "abc"}]}, "PULocationID 'abc'"),
    ({"dataframe_records": [{**TRIP, "DOLocationID": 300}]}, "DOLocationID 300"),
    ({"dataframe_records": [TRIP, {**TRIP, "trip_distance": -5}]}, "trip_distance -5 in trip 1"),
    ({"dataframe_records": [{**TRIP, "trip_distance": 5000}]}, "trip_distance 5000"),
    ({"dataframe_split": {"columns": ["trip_distance"], "data": [[1.0]]}}, "pickup"),
    ({"inputs": [TRIP]}, "dataframe_records, dataframe_split"),
    (b'{"dataframe_records": [', "not valid JSON"),
]  # fmt: skip


def test_each_bad_request_is_a_400_naming_the_field_and_nothing_is_predicted(
    store: Store, serve: Callable[..., str]
) -> None:
    _champion(store, "1")
    url = serve()
    for body, named in _BAD_REQUESTS:
        if isinstance(body, bytes):
            answer = httpx.post(
                f"{url}/invocations", content=body, headers={"Content-Type": "application/json"}
            )
        else:
            answer = _post(url, body)
        assert answer.status_code == 400, (body, answer.text)
        error = answer.json()
        assert "predictions" not in error
        assert named in error["message"], (named, error)
        assert "\n" not in error["message"]
    refused = _post(url, {**TRIP, "trip_distance": -1}, path="/trip")
    assert refused.status_code == 400
    assert "trip_distance -1" in refused.json()["message"]
    not_json = httpx.post(
        f"{url}/invocations", content=b"a,b\n1,2", headers={"Content-Type": "text/csv"}
    )
    assert not_json.status_code == 415
    assert "application/json" in not_json.json()["message"]


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    status: int
    version: str | None


def _client_loop(url: str, stop: threading.Event, answers: list[Answer]) -> None:
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            sent = time.monotonic()
            response = client.post(f"{url}/invocations", json={"dataframe_records": [TRIP]})
            answers.append(
                Answer(sent, time.monotonic(), response.status_code,
                       response.headers.get(VERSION_HEADER))
            )  # fmt: skip


def test_a_promotion_under_load_switches_versions_without_a_failed_request(
    store: Store, serve: Callable[..., str]
) -> None:
    _champion(store, "1")
    url = serve()
    stop = threading.Event()
    answers: list[Answer] = []  # list.append is atomic: the clients share it
    clients = [threading.Thread(target=_client_loop, args=(url, stop, answers)) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        _wait_for(lambda: len(answers) >= 20, "20 answers from the old version")
        promoted = time.monotonic()
        _champion(store, "2")
        _wait_for(lambda: any(a.version == "2" for a in answers), "an answer from v2")
        switched = min(a.received for a in answers if a.version == "2")
        _wait_for(lambda: sum(a.sent > switched for a in answers) >= 20, "20 answers after it")
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)

    assert {a.status for a in answers} == {200}
    assert {a.version for a in answers} <= {"1", "2"}  # only the champion or the one before
    assert {a.version for a in answers if a.received < promoted} == {"1"}
    first_new = min(a.sent for a in answers if a.version == "2")
    assert first_new - promoted < SWITCH_SECONDS
    # Once v2 has answered, a request sent after that never goes back to v1.
    assert {a.version for a in answers if a.sent > switched} == {"2"}


@pytest.mark.parametrize("broken", ["unloadable", "no_answer"])
def test_a_version_that_fails_to_load_or_answer_is_never_switched_to(
    broken: str, store: Store, serve: Callable[..., str]
) -> None:
    _champion(store, "1")
    url = serve()
    version = getattr(store, broken)
    _champion(store, version)

    def reported() -> bool:
        error = httpx.get(f"{url}/health").json()["last_error"]
        return error is not None and f"version {version} is not served" in error["message"]

    _wait_for(reported, f"/health reporting version {version}")
    for _ in range(10):  # polls go on: it is still not switched to
        answer = _post(url, {"dataframe_records": [TRIP]})
        assert (answer.status_code, answer.headers[VERSION_HEADER]) == (200, "1")
        assert answer.json()["predictions"][0] is not None
        time.sleep(POLL_SECONDS)
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "champion not served"
    assert (health["model_version"], health["champion"]) == ("1", version)
    assert "still serves" in health["last_error"]["message"]

    _champion(store, "2")  # a rollback to a good version is followed at once
    _wait_for(
        lambda: _post(url, {"dataframe_records": [TRIP]}).headers[VERSION_HEADER] == "2",
        "v2 served after the broken version",
    )
