"""Settings from the environment (``TAXI_DURATION_*`` and ``MLFLOW_TRACKING_URI``).

Read when asked, never at import. The defaults need no server: data is cached under
``./data``, MLflow runs on a sqlite file under ``./mlflow`` and predictions given a relative
path go under ``./outputs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

TLC_DATA_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"
_CHECK_PREFIX = "check_"


class Settings(BaseSettings):
    """Where data comes from and where runs and models go."""

    model_config = SettingsConfigDict(env_prefix="TAXI_DURATION_", extra="ignore")

    data_url: str = TLC_DATA_URL
    data_dir: Path = Path("data")
    # Where a relative ``predict --output`` is written: a run a worker starts works in a
    # temporary folder that is deleted after it (the stack sets an absolute folder).
    output_dir: Path = Path("outputs")
    # One registered model per taxi type: "{color}" is replaced by it (a name without it
    # gets "-{color}" appended), so a green champion is never compared with a yellow run.
    model_name: str = "nyc-taxi-duration-{color}"
    experiment_name: str = "nyc-taxi-duration"
    # Used only when MLFLOW_TRACKING_URI is not set: a sqlite store and its artifacts.
    mlflow_dir: Path = Path("mlflow")
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI")
    )
    download_timeout_seconds: float = 60.0
    download_retries: int = 3
    # Base of the exponential backoff between download retries (base, 2x base, 4x base ...).
    download_backoff_seconds: float = 2.0
    # Bound on the prepared-months cache (data_dir/prepared, ``taxi-duration cache ls``): the
    # least recently used months go first. A yellow month takes about 0.15 GB; 0 turns it off.
    cache_max_gb: float = Field(5.0, ge=0)
    # XGBoost's threads in all (--threads wins); unset: the CPUs available (taxi_duration.cpus).
    threads: int | None = Field(None, ge=1)
    # How often ``taxi-duration serve`` asks the registry where the champion alias points.
    serve_poll_seconds: float = Field(5.0, gt=0)
    # ``taxi-duration serve`` asks for credentials (HTTP basic auth) on its predictions: the
    # MLflow user and password below, those of the tracking server it reads the champion from.
    # ``stack up`` turns it on for the stack's services whenever the stack asks for credentials.
    # Unset: on when the service listens off loopback (``--host 0.0.0.0``), as the stack does.
    serve_auth: bool | None = None
    mlflow_tracking_username: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_USERNAME")
    )
    mlflow_tracking_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_PASSWORD")
    )
    # A download's progress bar on stderr; None: when stderr is a terminal (off with --quiet).
    progress_bar: bool | None = None

    # The data checks' thresholds (``checks.CheckThresholds``, docs/checks.md), one setting
    # each: ``check_<threshold>``. Unset: the default declared there, so defaults live once.
    check_min_kept_rows: int | None = None
    check_min_kept_share: float | None = None
    check_max_null_share: float | None = None
    check_max_zero_distance_share: float | None = None
    check_max_long_distance_share: float | None = None
    check_max_unknown_zone_share: float | None = None

    # Alerts (read by ``taxi-duration stack up``, which turns them into Prefect automations).
    # A webhook that takes {"text": ...} (Slack incoming webhook, Teams webhook/workflow).
    notify_webhook_url: str | None = None
    # Comma-separated addresses; needs smtp_host.
    notify_email_to: str | None = None
    notify_email_from: str = "taxi-duration@localhost"
    # Also tell when a new champion is promoted (not only failed or crashed runs).
    notify_on_promotion: bool = False
    smtp_host: str | None = None
    smtp_port: int | None = None  # default by smtp_tls: 587 starttls, 465 ssl, 25 none
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["starttls", "ssl", "none"] = "starttls"

    def registered_model(self, color: str) -> str:
        """The registered model of ``color``'s runs, e.g. ``nyc-taxi-duration-green``."""
        template = (
            self.model_name if "{color}" in self.model_name else f"{self.model_name}-{{color}}"
        )
        return template.replace("{color}", color)

    def check_thresholds(self) -> dict[str, Any]:
        """The checks' thresholds these settings set, by ``CheckThresholds`` field name."""
        return {
            name.removeprefix(_CHECK_PREFIX): value
            for name, value in self
            if name.startswith(_CHECK_PREFIX) and value is not None
        }

    @property
    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI if set, else the embedded sqlite store."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for a new experiment on the embedded store; a server picks its own."""
        if self.mlflow_tracking_uri:
            return None
        return (self.mlflow_dir / "artifacts").resolve().as_uri()
