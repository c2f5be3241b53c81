"""Alert groups become incidents: opened on first firing, updated as alerts join or resolve, resolved
when Alertmanager says the whole group is.

One incident per Alertmanager group (its ``groupKey``) and firing episode: a group that fires again
after it resolved opens a new incident. Times come from the alerts themselves (``startsAt``,
``endsAt``, as Prometheus saw them), not from when a notification arrived, so group_wait and
retries do not distort time to resolve; arrival times are kept in the timeline as ``notified``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from raylens.remediation.payload import Alert, Notification
from raylens.remediation.store import Store

# Labels that say what an incident affects (cluster, project, deployment, ...), in display order.
SCOPE_LABELS = (
    "cluster",
    "instance",
    "project",
    "team",
    "user",
    "budget",
    "application",
    "deployment",
    "submission_id",
    "job_id",
    "node_id",
)
SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1}


@dataclass(frozen=True)
class IncidentUpdate:
    incident_id: int
    opened: bool = False
    resolved: bool = False
    duplicate: bool = False


def scope_of(alerts: tuple[Alert, ...] | list[dict[str, str]], known: dict[str, list[str]] | None = None) -> dict:
    scope: dict[str, set[str]] = {label: set(values) for label, values in (known or {}).items()}
    for alert in alerts:
        labels = alert.labels if isinstance(alert, Alert) else alert
        for label in SCOPE_LABELS:
            if labels.get(label):
                scope.setdefault(label, set()).add(labels[label])
        # Budget and quota alerts name who they cover as scope="project", match="vision".
        if labels.get("scope") in ("project", "team", "user") and labels.get("match"):
            scope.setdefault(labels["scope"], set()).add(labels["match"])
    return {label: sorted(scope[label]) for label in SCOPE_LABELS if label in scope}


# Labels that tell two alerts of one group apart beyond their scope (a budget's 80 % and 100 %).
DISTINGUISHING_LABELS = ("threshold", "severity")


def describe_alert(alert: Alert) -> str:
    shown = [*SCOPE_LABELS, *DISTINGUISHING_LABELS]
    scope = ", ".join(f"{label}={alert.labels[label]}" for label in shown if alert.labels.get(label))
    return f"{alert.name}" + (f" ({scope})" if scope else "")


def _severity(alerts: tuple[Alert, ...], current: str = "") -> str:
    names = [alert.labels.get("severity", "") for alert in alerts] + [current]
    return max(names, key=lambda name: SEVERITY_RANK.get(name, 0)) or "none"


def _summary(notification: Notification) -> str:
    return notification.common_annotations.get("summary") or notification.alerts[0].annotations.get("summary", "")


def apply_notification(store: Store, notification: Notification, received_at: float) -> IncidentUpdate:
    """Record one delivery: open, update or resolve the group's incident, with timeline events."""
    with store.transaction() as db:
        row = db.execute(
            "SELECT * FROM incidents WHERE group_key = ? AND status = 'open' ORDER BY id DESC LIMIT 1",
            (notification.group_key,),
        ).fetchone()
        opened = False
        if row is None and not notification.firing and _already_resolved(db, notification):
            # The same resolution delivered again: nothing new to record.
            last = db.execute(
                "SELECT id FROM incidents WHERE group_key = ? ORDER BY id DESC LIMIT 1", (notification.group_key,)
            ).fetchone()
            return IncidentUpdate(last["id"], duplicate=True)
        if row is None:
            incident_id = _open(store, db, notification, received_at)
            opened = True
        else:
            incident_id = row["id"]
        changed = _record_alerts(store, db, incident_id, notification)
        _refresh_summary(db, incident_id, notification)
        store.add_event(
            db,
            incident_id,
            received_at,
            "notified",
            f"notification to {notification.receiver}: {notification.status}, {len(notification.firing)} of "
            f"{len(notification.alerts)} alerts firing",
            changed=changed,
        )
        resolved = False
        if notification.status == "resolved":
            resolved_at = max(alert.ends_at or received_at for alert in notification.alerts)
            db.execute(
                "UPDATE incidents SET status = 'resolved', resolved_at = ? WHERE id = ?", (resolved_at, incident_id)
            )
            store.add_event(db, incident_id, resolved_at, "resolved", "resolved: every alert of the group resolved")
            resolved = True
        return IncidentUpdate(incident_id, opened=opened, resolved=resolved)


def _already_resolved(db: sqlite3.Connection, notification: Notification) -> bool:
    for alert in notification.alerts:
        known = db.execute(
            "SELECT a.status FROM alerts a JOIN incidents i ON i.id = a.incident_id"
            " WHERE i.group_key = ? AND a.fingerprint = ? AND a.starts_at = ?",
            (notification.group_key, alert.fingerprint, alert.starts_at),
        ).fetchone()
        if known is None or known["status"] != "resolved":
            return False
    return True


def _open(store: Store, db: sqlite3.Connection, notification: Notification, received_at: float) -> int:
    opened_at = min(alert.starts_at for alert in notification.alerts)
    names = sorted({alert.name for alert in notification.alerts})
    cursor = db.execute(
        "INSERT INTO incidents (group_key, receiver, status, title, severity, summary, scope, common_labels,"
        " opened_at, first_notified_at) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?)",
        (
            notification.group_key,
            notification.receiver,
            ", ".join(names),
            _severity(notification.alerts),
            _summary(notification),
            json.dumps(scope_of(notification.alerts)),
            json.dumps(notification.common_labels, sort_keys=True),
            opened_at,
            received_at,
        ),
    )
    incident_id = int(cursor.lastrowid or 0)
    store.add_event(db, incident_id, opened_at, "opened", f"incident opened: {', '.join(names)} firing")
    return incident_id


def _record_alerts(store: Store, db: sqlite3.Connection, incident_id: int, notification: Notification) -> int:
    changed = 0
    for alert in notification.alerts:
        key = (incident_id, alert.fingerprint, alert.starts_at)
        known = db.execute(
            "SELECT status FROM alerts WHERE incident_id = ? AND fingerprint = ? AND starts_at = ?", key
        ).fetchone()
        if known is None:
            db.execute(
                "INSERT INTO alerts (incident_id, fingerprint, starts_at, ends_at, status, labels, annotations,"
                " expression) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *key,
                    alert.ends_at if alert.status == "resolved" else None,
                    alert.status,
                    json.dumps(alert.labels, sort_keys=True),
                    json.dumps(alert.annotations, sort_keys=True),
                    alert.expression,
                ),
            )
            store.add_event(db, incident_id, alert.starts_at, "alert_firing", f"{describe_alert(alert)} started firing")
            changed += 1
        if alert.status == "resolved" and (known is None or known["status"] == "firing"):
            db.execute(
                "UPDATE alerts SET status = 'resolved', ends_at = ? WHERE incident_id = ? AND fingerprint = ?"
                " AND starts_at = ?",
                (alert.ends_at, *key),
            )
            store.add_event(
                db, incident_id, alert.ends_at or alert.starts_at, "alert_resolved", f"{describe_alert(alert)} resolved"
            )
            changed += 1
    return changed


def _refresh_summary(db: sqlite3.Connection, incident_id: int, notification: Notification) -> None:
    row = db.execute("SELECT severity, scope FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    labels = [
        json.loads(text) for (text,) in db.execute("SELECT labels FROM alerts WHERE incident_id = ?", (incident_id,))
    ]
    names = sorted({labels_["alertname"] for labels_ in labels})
    db.execute(
        "UPDATE incidents SET title = ?, severity = ?, scope = ? WHERE id = ?",
        (
            ", ".join(names),
            _severity(notification.alerts, row["severity"]),
            json.dumps(scope_of(labels, json.loads(row["scope"]))),
            incident_id,
        ),
    )


def incident_durations(incident: dict[str, Any], now: float) -> dict[str, float | None]:
    """Seconds from opening to acknowledgement, to resolution (or until ``now`` while open), and open."""
    opened = incident["opened_at"]
    acknowledged = incident.get("acknowledged_at")
    resolved = incident.get("resolved_at")
    return {
        "time_to_acknowledge": None if acknowledged is None else max(acknowledged - opened, 0.0),
        "time_to_resolve": None if resolved is None else max(resolved - opened, 0.0),
        "open_for": max((resolved if resolved is not None else now) - opened, 0.0),
    }
