"""Alerts as code: Prefect notification blocks and automations, made from the settings.

``taxi-duration stack up`` calls :func:`apply`, which makes the Prefect server hold exactly
the alerts the ``TAXI_DURATION_NOTIFY_*`` and ``TAXI_DURATION_SMTP_*`` settings ask for:

* a notification block per channel: ``taxi-duration-webhook`` (Prefect's custom webhook block
  posting ``{"text": ...}``, which Slack and Teams webhooks take) and ``taxi-duration-email``
  (:class:`SMTPEmail`, below);
* the automation ``taxi-duration: run failed or crashed``, on the Failed and Crashed events
  of every flow run of the stack's work pool, and, with ``TAXI_DURATION_NOTIFY_ON_PROMOTION``,
  ``taxi-duration: new champion``, on the ``taxi-duration.model.promoted`` event that the
  promote task emits; ``taxi-duration: champion degraded``, on the
  ``taxi-duration.model.degraded`` event that a monitor run emits (prefect.yaml's trigger on
  ``train/monthly`` retrains on it);
* always, ``taxi-duration: run stopped sending heartbeats``: Prefect's own recipe for runs
  whose process died without a word (a worker or machine killed): a run that has sent a
  heartbeat and then sends neither another nor a final state within 90 s is marked Crashed,
  which the first automation then tells.

The Prefect server renders the messages and sends them (its automation service), so they
go out however the run ended, even when its worker was killed. Running ``apply`` again
updates both in place; a channel or alert no longer asked for is deleted.

:class:`SMTPEmail` is a Prefect block of this package: the package declares this module as a
Prefect collection (entry point ``prefect.collections``), so the Prefect server, installed
in the same environment, imports it and can load the block when it sends.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any, Literal
from uuid import UUID

import anyio.to_thread
from prefect.blocks.abstract import NotificationBlock, NotificationError
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr, ValidationError

from taxi_duration.errors import InvalidInputError
from taxi_duration.settings import Settings

PROMOTED_EVENT = "taxi-duration.model.promoted"
DEGRADED_EVENT = "taxi-duration.model.degraded"
DEGRADED_AUTOMATION = "taxi-duration: champion degraded"
FAILED_AUTOMATION = "taxi-duration: run failed or crashed"
HEARTBEAT_AUTOMATION = "taxi-duration: run stopped sending heartbeats"
# Flow runs send a heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (30 unless set,
# which the stack puts in the pool's job template); one silent for this many of them is marked
# Crashed (Prefect's documented automation: 90 s for 30 s heartbeats).
MISSED_HEARTBEATS = 3
PROMOTED_AUTOMATION = "taxi-duration: new champion"
WEBHOOK_BLOCK = "taxi-duration-webhook"
EMAIL_BLOCK = "taxi-duration-email"
_PREFIX = "taxi-duration: "  # what marks an automation as ours (stack.pool.AUTOMATION_PREFIX too)
SMTP_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}

# Rendered by the Prefect server (Jinja). flow_run, flow and deployment are those of the run
# the event concerns; `ui_url` uses the server's PREFECT_UI_URL, which the stack sets.
_MLFLOW_LINE = (
    '{% if flow_run.labels.get("mlflow.run_id") %}MLflow run: MLFLOW_URL/#/runs/'
    '{{ flow_run.labels["mlflow.run_id"] }}\n{% endif %}'
)
FAILED_SUBJECT = (
    "taxi-duration: {{ flow.name }}/{{ deployment.name }} run {{ flow_run.name }} "
    "{{ flow_run.state.name }}"
)
FAILED_BODY = (
    "Flow run {{ flow_run.name }} of deployment {{ flow.name }}/{{ deployment.name }} "
    "ended {{ flow_run.state.name }}.\n"
    '{% set lines = (flow_run.state.message or "").strip().splitlines() %}'
    'Error: {{ lines[0] if lines else "no message" }}\n'
    "Prefect run: {{ flow_run|ui_url }}\n" + _MLFLOW_LINE
)
PROMOTED_SUBJECT = (
    "taxi-duration: {{ event.payload.model_name }} version {{ event.payload.version }} "
    "is the new champion"
)
PROMOTED_BODY = (
    "{{ event.payload.model_name }} version {{ event.payload.version }} is the new champion "
    '(was {{ event.payload.previous_champion or "none" }}): {{ event.payload.reason }}.\n'
    "Flow run {{ flow_run.name }} of deployment {{ flow.name }}/{{ deployment.name }}.\n"
    "Prefect run: {{ flow_run|ui_url }}\n" + _MLFLOW_LINE
)
DEGRADED_SUBJECT = (
    "taxi-duration: {{ event.resource['prefect.resource.name'] }} version "
    "{{ event.payload.model_version }} degraded on {{ event.payload.month }}"
)
DEGRADED_BODY = (
    "{{ event.resource['prefect.resource.name'] }} version {{ event.payload.model_version }} "
    "is degraded on {{ event.payload.month }}: {{ event.payload.reasons | join('; ') }}.\n"
    "train/monthly retrains it on the month before, validated on {{ event.payload.month }}.\n"
    "Flow run {{ flow_run.name }} of deployment {{ flow.name }}/{{ deployment.name }}.\n"
    "Prefect run: {{ flow_run|ui_url }}\n"
)


class SMTPEmail(NotificationBlock):
    """Send a notification as an email through an SMTP server (STARTTLS, SSL or plain)."""

    _block_type_name = "taxi-duration SMTP email"
    _block_type_slug = "taxi-duration-smtp-email"
    _description = "Email through an SMTP server, for taxi-duration's alerts."

    host: str
    port: int
    tls: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str
    to: list[str]
    timeout: float = 30.0

    async def notify(self, body: str, subject: str | None = None) -> None:
        await anyio.to_thread.run_sync(self._send, body, subject)

    def _send(self, body: str, subject: str | None) -> None:
        message = EmailMessage()
        message["Subject"] = subject or "taxi-duration"
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message.set_content(body)
        context = ssl.create_default_context()
        try:
            server = (
                smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
                if self.tls == "ssl"
                else smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            )
            with server:
                if self.tls == "starttls":
                    server.starttls(context=context)
                if self.username:
                    password = self.password.get_secret_value() if self.password else ""
                    server.login(self.username, password)
                server.send_message(message)
        except (OSError, smtplib.SMTPException) as error:
            raise NotificationError(
                log=f"email to {self.host}:{self.port} ({self.tls}) failed: {error}"
            ) from error


@dataclass(frozen=True)
class Alerts:
    """What the settings ask for: the channels, and whether promotions are told too."""

    webhook_url: str | None
    email: SMTPEmail | None
    on_promotion: bool


def read_settings() -> Settings:
    """The settings; a bad value is one line naming the variable and what is allowed."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = "TAXI_DURATION_" + "_".join(str(part) for part in first["loc"]).upper()
        raise InvalidInputError(f"{name} {first.get('input')!r}: {first['msg']}") from None


def alerts_from(settings: Settings) -> Alerts:
    """The alerts the settings ask for, checked."""
    webhook = settings.notify_webhook_url or None
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"TAXI_DURATION_NOTIFY_WEBHOOK_URL {webhook!r} is not a URL: allowed http(s)://..."
        )
    email = None
    if settings.notify_email_to:
        to = [address.strip() for address in settings.notify_email_to.split(",")]
        for address in to:
            if "@" not in address:
                raise InvalidInputError(
                    f"TAXI_DURATION_NOTIFY_EMAIL_TO {address!r} is not an email address: "
                    "allowed name@domain, comma-separated"
                )
        if not settings.smtp_host:
            raise InvalidInputError(
                f"TAXI_DURATION_NOTIFY_EMAIL_TO {settings.notify_email_to!r} needs an SMTP "
                "server: set TAXI_DURATION_SMTP_HOST (and _PORT, _USER, _PASSWORD, _TLS)"
            )
        email = SMTPEmail(
            host=settings.smtp_host,
            port=settings.smtp_port or SMTP_DEFAULT_PORTS[settings.smtp_tls],
            tls=settings.smtp_tls,
            username=settings.smtp_user,
            password=settings.smtp_password,
            sender=settings.notify_email_from,
            to=to,
        )
    return Alerts(webhook, email, settings.notify_on_promotion)


def _webhook_block(url: str) -> CustomWebhookNotificationBlock:
    return CustomWebhookNotificationBlock(
        name="taxi-duration",
        # The URL holds the webhook's token (Slack, Teams): a secret of the block, masked in
        # the UI and the API.
        url="{{webhook_url}}",
        secrets={"webhook_url": url},
        method="POST",
        json_data={"text": "{{subject}}\n\n{{body}}"},
        timeout=30,
        headers=None,
        cookies=None,
    )


def _automation(
    name: str, description: str, expect: set[str], pool: str, actions: list[Any]
) -> AutomationCore:
    return AutomationCore(
        name=name,
        description=description,
        enabled=True,
        trigger=EventTrigger(
            expect=expect,
            # Runs of the stack's work pool: the project's deployments.
            match_related={"prefect.resource.role": "work-pool", "prefect.resource.name": pool},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=actions,
    )


def apply(
    alerts: Alerts, api_url: str, pool: str, mlflow_url: str, heartbeat_seconds: int
) -> list[str]:
    """Make the Prefect server at ``api_url`` hold these alerts, runs sending heartbeats every
    ``heartbeat_seconds``; the alerts in force, described."""
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.settings import PREFECT_API_URL, temporary_settings

    webhook = _webhook_block(alerts.webhook_url) if alerts.webhook_url else None
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        ours = _ours(client)
        blocks = [
            _save(block, name)
            for name, block in ((WEBHOOK_BLOCK, webhook), (EMAIL_BLOCK, alerts.email))
            if block is not None
        ]
        wanted = []
        for subject, body, name, expect, description in _wanted(alerts):
            actions = [
                SendNotification(
                    block_document_id=block_id,
                    subject=subject,
                    body=body.replace("MLFLOW_URL", mlflow_url),
                )
                for block_id in blocks
            ]
            automation = _automation(name, description, expect, pool, actions)
            if name in ours:
                client.update_automation(ours[name].id, automation)
            else:
                client.create_automation(automation)
            wanted.append(name)
        heartbeats = heartbeat_automation(heartbeat_seconds)
        if HEARTBEAT_AUTOMATION in ours:
            client.update_automation(ours[HEARTBEAT_AUTOMATION].id, heartbeats)
        else:
            client.create_automation(heartbeats)
        wanted.append(HEARTBEAT_AUTOMATION)
        # Then what is no longer asked for: the automations first, then their blocks.
        for name, existing in ours.items():
            if name not in wanted:
                client.delete_automation(existing.id)
        if webhook is None:
            _delete_block(client, WEBHOOK_BLOCK, "custom-webhook")
        if alerts.email is None:
            _delete_block(client, EMAIL_BLOCK, SMTPEmail.get_block_type_slug())
    channels = ", ".join(_channels(alerts))
    return [
        f"{name} -> {'mark it Crashed' if name == HEARTBEAT_AUTOMATION else channels}"
        for name in wanted
    ]


def _ours(client: Any) -> dict[str, Any]:
    """The project's automations on the server, by name. Page by page, as `stack status`
    reads them: the server answers at most its default limit (200) a call, and one of ours
    beyond it would be made again."""
    from prefect.client.schemas.sorting import AutomationSort

    ours: dict[str, Any] = {}
    offset = 0
    while page := client.read_automations(sort=AutomationSort.NAME_ASC, offset=offset):
        ours |= {each.name: each for each in page if each.name.startswith(_PREFIX)}
        offset += len(page)
    return ours


def heartbeat_automation(heartbeat_seconds: int) -> AutomationCore:
    """Prefect's documented automation for runs that stopped sending their heartbeats, sent
    every ``heartbeat_seconds``."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState

    timeout = timedelta(seconds=MISSED_HEARTBEATS * heartbeat_seconds)
    final = ("Completed", "Failed", "Cancelled", "Crashed")
    return AutomationCore(
        name=HEARTBEAT_AUTOMATION,
        description=f"A flow run silent for {int(timeout.total_seconds())} s after a heartbeat "
        "(its process died) is marked Crashed.",
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in final)},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timeout,
        ),
        actions=[
            ChangeFlowRunState(
                name="Crashed",
                state=StateType.CRASHED,
                force=False,
                message=f"its process stopped: no heartbeat for {int(timeout.total_seconds())} s "
                "(a worker or machine killed?)",
            )
        ],
    )


def _save(block: NotificationBlock, name: str) -> UUID:
    type(block).register_type_and_schema()
    return UUID(str(block.save(name, overwrite=True)))


def _delete_block(client: Any, name: str, slug: str) -> None:
    try:
        existing = client.read_block_document_by_name(name, block_type_slug=slug)
    except ObjectNotFound:
        return
    client.delete_block_document(existing.id)


def _wanted(alerts: Alerts) -> list[tuple[str, str, str, set[str], str]]:
    if not (alerts.webhook_url or alerts.email):
        return []
    wanted = [
        (
            FAILED_SUBJECT,
            FAILED_BODY,
            FAILED_AUTOMATION,
            {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            "A flow run of the taxi-duration work pool ended Failed or Crashed.",
        )
    ]
    wanted.append(
        (
            DEGRADED_SUBJECT,
            DEGRADED_BODY,
            DEGRADED_AUTOMATION,
            {DEGRADED_EVENT},
            "A monitor run of the taxi-duration work pool found a champion degraded.",
        )
    )
    if alerts.on_promotion:
        wanted.append(
            (
                PROMOTED_SUBJECT,
                PROMOTED_BODY,
                PROMOTED_AUTOMATION,
                {PROMOTED_EVENT},
                "A run of the taxi-duration work pool promoted a new champion.",
            )
        )
    return wanted


def _channels(alerts: Alerts) -> list[str]:
    channels = []
    if alerts.webhook_url:
        from urllib.parse import urlsplit

        channels.append(f"webhook to {urlsplit(alerts.webhook_url).netloc}")
    if alerts.email:
        channels.append(f"email to {', '.join(alerts.email.to)} via {alerts.email.host}")
    return channels
