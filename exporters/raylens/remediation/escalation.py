"""Time-based escalation of unacknowledged incidents, delivered through Alertmanager.

Alertmanager already escalates by severity (critical reaches on-call as well as the team) and
re-notifies on ``repeat_interval``; what it cannot do is notice that nobody has acknowledged an
incident for half an hour and go one level up. This loop does that: an open incident of an escalated
severity, not acknowledged (``raylens incidents ack``), escalates to each of
``remediation.escalation_levels`` once it has been open that level's ``after``. An escalation is an
alert posted to Alertmanager's API::

    RaylensIncidentEscalated{incident="12", escalation_level="secondary-oncall",
                             escalated_alertname="RaylensServeErrorBudgetBurn", severity="critical", team="search"}

so routing, silences and inhibitions apply to it like to any other (the shipped routing sends it to
the ``escalation`` receiver, whose ``repeat_interval`` re-notifies). It is re-posted on every check
while it holds, and resolved once the incident is acknowledged or resolved, or moves up a level.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from raylens.audit import record
from raylens.config import RemediationConfig
from raylens.config.remediation import EscalationLevel, duration_seconds
from raylens.remediation.metrics import RemediationMetrics
from raylens.remediation.store import Store

log = logging.getLogger("raylens.remediation")

ESCALATION_ALERT = "RaylensIncidentEscalated"
ACTOR = "raylens-remediate"


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


def human_duration(seconds: float) -> str:
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if value]
    return " ".join([*parts, f"{seconds}s"] if seconds or not parts else parts)


class Escalator:
    def __init__(
        self,
        config: RemediationConfig,
        runbook_url_base: str,
        store: Store,
        metrics: RemediationMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.runbook_url = runbook_url_base + ESCALATION_ALERT + ".md"
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.levels = sorted(config.escalation_levels, key=lambda level: duration_seconds(level.after))

    def _level_reached(self, opened_at: float, now: float) -> EscalationLevel | None:
        reached = [level for level in self.levels if now - opened_at >= duration_seconds(level.after)]
        return reached[-1] if reached else None

    def check(self) -> list[dict[str, Any]]:
        """Escalate what is due, post every escalation alert that holds or ends; returns what was posted."""
        now = self.clock()
        posts: list[dict[str, Any]] = []
        closing: list[int] = []
        for incident in self.store.incidents(status="open", limit=10_000):
            if incident["severity"] not in self.config.escalation_severities or incident["acknowledged_at"]:
                continue
            level = self._level_reached(incident["opened_at"], now)
            if level is None:
                continue
            previous = incident["escalation_level"]
            if previous != level.name:
                self._escalate(incident, level, now)
                if previous:
                    posts.append(self._alert(incident, previous, incident["escalated_at"], ends_at=now))
                incident = {**incident, "escalation_level": level.name, "escalated_at": now}
            posts.append(
                self._alert(
                    incident, level.name, incident["escalated_at"], now + 3 * self.config.escalation_check_seconds
                )
            )
        for incident in self.store.query(
            "SELECT * FROM incidents WHERE escalation_level IS NOT NULL AND escalation_closed_at IS NULL"
            " AND (status = 'resolved' OR acknowledged_at IS NOT NULL)"
        ):
            posts.append(self._alert(incident, incident["escalation_level"], incident["escalated_at"], ends_at=now))
            closing.append(incident["id"])
        if posts and self._post(posts):
            with self.store.transaction() as db:
                for incident_id in closing:
                    db.execute("UPDATE incidents SET escalation_closed_at = ? WHERE id = ?", (now, incident_id))
        return posts

    def _escalate(self, incident: dict[str, Any], level: EscalationLevel, now: float) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE incidents SET escalation_level = ?, escalated_at = ? WHERE id = ?",
                (level.name, now, incident["id"]),
            )
            self.store.add_event(
                db,
                incident["id"],
                now,
                "escalated",
                f"escalated to {level.name}: not acknowledged "
                f"{human_duration(now - incident['opened_at'])} after opening",
            )
        record(
            "incident_escalated",
            actor=ACTOR,
            incident_id=incident["id"],
            level=level.name,
            title=incident["title"],
            open_seconds=round(now - incident["opened_at"], 3),
        )
        if self.metrics:
            self.metrics.escalations.labels(level.name).inc()
        log.warning("incident escalated", extra={"incident_id": incident["id"], "level": level.name})

    def _alert(self, incident: dict[str, Any], level: str, since: float, ends_at: float) -> dict[str, Any]:
        labels = {
            "alertname": ESCALATION_ALERT,
            "severity": "critical",
            "incident": str(incident["id"]),
            "escalation_level": level,
            "escalated_alertname": incident["title"].split(", ")[0],
        }
        teams = incident["scope"].get("team") or []
        if len(teams) == 1:
            labels["team"] = teams[0]
        scope = "; ".join(f"{label} {', '.join(values)}" for label, values in incident["scope"].items())
        return {
            "labels": labels,
            "annotations": {
                "summary": f"Incident {incident['id']} ({incident['title']}) is unacknowledged; escalated to {level}.",
                "description": f"Incident {incident['id']} opened {rfc3339(incident['opened_at'])} "
                f"({incident['summary']}"
                f"{'; ' + scope if scope else ''}) has not been acknowledged. Acknowledge it with "
                f"`raylens incidents ack {incident['id']} --by NAME`; `raylens incidents show {incident['id']}` has "
                "its timeline.",
                "runbook_url": self.runbook_url,
            },
            "startsAt": rfc3339(since),
            "endsAt": rfc3339(ends_at),
        }

    def _post(self, alerts: list[dict[str, Any]]) -> bool:
        if not self.config.alertmanager_url:
            return False
        url = self.config.alertmanager_url.rstrip("/") + "/api/v2/alerts"
        try:
            response = requests.post(url, json=alerts, timeout=10)
            response.raise_for_status()
        except requests.RequestException as error:
            # Retried on the next check: every escalation that holds is posted again.
            log.warning("cannot post escalation alerts", extra={"url": url, "error": str(error)})
            if self.metrics:
                self.metrics.escalation_errors.inc()
            return False
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.config.escalation_check_seconds):
            try:
                self.check()
            except Exception:
                log.exception("escalation check failed; retrying on the next one")
