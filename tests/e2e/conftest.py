"""One stack for the tests of running it as a team: alerts, settings, concurrency.

``taxi-duration stack up`` on free loopback ports, with all its state in a temporary folder,
its alerts pointed at an SMTP sink and a webhook receiver on loopback, and the deployments
of prefect.yaml deployed. Started once per session (a stack takes a minute or more to start
on a loaded machine), stopped at the end, and any process group it left is killed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from team_stack import SMTPSink, Stack, WebhookReceiver, deploy, running_stack


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SMTPSink]:
    sink = SMTPSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def team_stack(
    tmp_path_factory: pytest.TempPathFactory,
    synthetic_data_url: str,
    smtp_sink: SMTPSink,
    webhook_receiver: WebhookReceiver,
) -> Iterator[Stack]:
    """The stack with alerts by webhook and email (not on promotions), serving green's and
    yellow's champions."""
    with running_stack(
        tmp_path_factory.mktemp("team"),
        synthetic_data_url,
        TAXI_DURATION_NOTIFY_WEBHOOK_URL=webhook_receiver.url,
        TAXI_DURATION_NOTIFY_EMAIL_TO="team@example.com, oncall@example.com",
        TAXI_DURATION_SMTP_HOST="127.0.0.1",
        TAXI_DURATION_SMTP_PORT=str(smtp_sink.port),
        TAXI_DURATION_SMTP_TLS="none",
        # Green's champion served (other tests promote it), yellow's never made: 503 throughout.
        TAXI_DURATION_SERVE_COLORS="green,yellow",
        TAXI_DURATION_SERVE_POLL_SECONDS="1",
    ) as stack:
        yield stack


@pytest.fixture(scope="session")
def team_deployed(team_stack: Stack) -> subprocess.CompletedProcess[str]:
    """``prefect deploy --all`` from the repository root."""
    return deploy(team_stack)
