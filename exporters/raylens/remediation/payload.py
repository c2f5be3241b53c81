"""Alertmanager's webhook payload (version 4), validated before anything is recorded or done.

Sample (abridged)::

    {"version": "4", "groupKey": "{}/{remediation=~\\".+\\"}:{alertname=\\"RaylensClusterIdle\\"}",
     "status": "firing", "receiver": "remediation", "groupLabels": {...}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
     "alerts": [{"status": "firing", "labels": {"alertname": "RaylensClusterIdle", ...},
                 "annotations": {"summary": "..."}, "startsAt": "2026-11-25T10:00:00.123456789Z",
                 "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph?g0.expr=...",
                 "fingerprint": "4f1c2e0a9b3d7c61"}]}
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Alertmanager writes RFC 3339 with nanoseconds; Python reads at most microseconds.
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class PayloadError(ValueError):
    """The body is not an Alertmanager v4 notification; the message says what is wrong."""


def parse_timestamp(text: str) -> float | None:
    """Seconds since the epoch, or ``None`` for Alertmanager's zero time (an alert still firing)."""
    match = _TIMESTAMP.match(text)
    if not match:
        raise ValueError(f"expected an RFC 3339 timestamp, got {text!r}")
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + (fraction or "")[:7] + ("+00:00" if zone == "Z" else zone))
    return None if moment.year <= 1 else moment.timestamp()


class _Model(BaseModel):
    # Alertmanager adds fields over time; unknown ones are kept out, the ones we need are required.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Alert(_Model):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: float = Field(alias="startsAt")
    ends_at: float | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = Field(min_length=1)

    @field_validator("starts_at", mode="before")
    @classmethod
    def _starts(cls, value: Any) -> float:
        parsed = parse_timestamp(value) if isinstance(value, str) else None
        if parsed is None:
            raise ValueError("expected the RFC 3339 time the alert started firing")
        return parsed

    @field_validator("ends_at", mode="before")
    @classmethod
    def _ends(cls, value: Any) -> float | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("expected an RFC 3339 timestamp")
        return parse_timestamp(value)

    @field_validator("labels")
    @classmethod
    def _named(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("expected an alertname label")
        return labels

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def expression(self) -> str | None:
        """The alerting rule's PromQL, from Prometheus' generator URL (``/graph?g0.expr=...``)."""
        values = parse_qs(urlsplit(self.generator_url).query).get("g0.expr")
        return values[0] if values else None


class Notification(_Model):
    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1)
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    alerts: tuple[Alert, ...] = Field(min_length=1)

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(alert for alert in self.alerts if alert.status == "firing")


def parse_notification(data: Any) -> Notification:
    """Validate a decoded JSON body; ``PayloadError`` names the first bad field and what was expected."""
    if not isinstance(data, dict):
        raise PayloadError("expected a JSON object (an Alertmanager webhook notification)")
    try:
        return Notification.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise PayloadError(f"{where}: {first['msg']} (expected an Alertmanager v4 notification)") from None
