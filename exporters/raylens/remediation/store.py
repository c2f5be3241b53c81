"""Incidents, their timelines and remediation actions in one SQLite file (stdlib ``sqlite3``, WAL).

WAL lets ``raylens incidents`` read while the service writes, and every change is committed before
the webhook is answered, so a restart of the service loses nothing. The schema is created on first
use; ``SCHEMA_VERSION`` guards later changes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_key TEXT NOT NULL,
    receiver TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    scope TEXT NOT NULL,
    common_labels TEXT NOT NULL,
    opened_at REAL NOT NULL,
    first_notified_at REAL NOT NULL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    resolved_at REAL,
    escalation_level TEXT,
    escalated_at REAL,
    escalation_closed_at REAL,
    impact TEXT
);
CREATE INDEX IF NOT EXISTS incidents_by_group ON incidents (group_key, status);
CREATE TABLE IF NOT EXISTS alerts (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    fingerprint TEXT NOT NULL,
    starts_at REAL NOT NULL,
    ends_at REAL,
    status TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    expression TEXT,
    PRIMARY KEY (incident_id, fingerprint, starts_at)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_by_incident ON events (incident_id, ts);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    incident_id INTEGER REFERENCES incidents (id),
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    cluster TEXT,
    decided_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS actions_by_target ON actions (target, decided_at);
"""

# Outcomes of an action row: pending (decided, queued), deferred (backing off), started, then a final one.
FINAL_OUTCOMES = ("acted", "dry_run", "skipped", "failed", "interrupted")
JSON_COLUMNS = {"scope", "common_labels", "labels", "annotations", "detail", "impact"}


def _decoded(row: sqlite3.Row) -> dict[str, Any]:
    # Iterating a Row yields its values; its column names come from keys().
    names = row.keys()
    return {key: (json.loads(row[key]) if key in JSON_COLUMNS and row[key] is not None else row[key]) for key in names}


class Store:
    """Thread-safe access to the incident database (one connection, one lock)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._connection.row_factory = sqlite3.Row
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA foreign_keys=ON")
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path} was written by a newer raylens (schema {version} > {SCHEMA_VERSION})")
        # Every statement is IF NOT EXISTS, so two processes creating the file at once agree.
        self._connection.executescript(SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``BEGIN IMMEDIATE`` so concurrent writers wait instead of failing."""
        with self._lock:
            db = self._connection
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [_decoded(row) for row in self._connection.execute(sql, parameters).fetchall()]

    # --- incidents ---

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return rows[0] if rows else None

    def incidents(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        where, parameters = ("WHERE status = ?", [status]) if status else ("", [])
        return self.query(f"SELECT * FROM incidents {where} ORDER BY id DESC LIMIT ?", [*parameters, limit])

    def alerts(self, incident_id: int) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM alerts WHERE incident_id = ? ORDER BY starts_at, fingerprint", (incident_id,))

    def events(self, incident_id: int) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM events WHERE incident_id = ? ORDER BY ts, id", (incident_id,))

    def actions(self, incident_id: int | None = None) -> list[dict[str, Any]]:
        if incident_id is None:
            return self.query("SELECT * FROM actions ORDER BY id")
        return self.query("SELECT * FROM actions WHERE incident_id = ? ORDER BY id", (incident_id,))

    def add_event(
        self, db: sqlite3.Connection, incident_id: int, ts: float, kind: str, text: str, **detail: Any
    ) -> None:
        db.execute(
            "INSERT INTO events (incident_id, ts, kind, text, detail) VALUES (?, ?, ?, ?, ?)",
            (incident_id, ts, kind, text, json.dumps(detail, sort_keys=True, default=str)),
        )

    def acknowledge(self, incident_id: int, by: str, at: float, note: str = "") -> bool:
        """Mark an incident acknowledged (stops its escalation); False when it is unknown or already so."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE incidents SET acknowledged_at = ?, acknowledged_by = ?"
                " WHERE id = ? AND acknowledged_at IS NULL",
                (at, by, incident_id),
            ).rowcount
            if changed:
                self.add_event(
                    db, incident_id, at, "acknowledged", f"acknowledged by {by}" + (f": {note}" if note else "")
                )
        return bool(changed)

    def set_impact(self, incident_id: int, figures: list[dict[str, Any]]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE incidents SET impact = ? WHERE id = ?", (json.dumps(figures, sort_keys=True), incident_id)
            )

    # --- actions ---

    def claim_action(
        self, dedupe_key: str, incident_id: int | None, action: str, target: str, cluster: str | None, at: float
    ) -> int | None:
        """Insert a pending action; ``None`` when ``dedupe_key`` was decided before (a re-delivery)."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO actions (dedupe_key, incident_id, action, target, cluster, decided_at, outcome)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                (dedupe_key, incident_id, action, target, cluster, at),
            )
            return cursor.lastrowid if cursor.rowcount else None

    def action_by_id(self, action_id: int | None) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM actions WHERE id = ?", (action_id,))
        return rows[0] if rows else None

    def action_by_key(self, dedupe_key: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM actions WHERE dedupe_key = ?", (dedupe_key,))
        return rows[0] if rows else None

    def update_action(self, action_id: int, outcome: str, at: float, reason: str = "", **detail: Any) -> None:
        finished = at if outcome in FINAL_OUTCOMES else None
        with self.transaction() as db:
            db.execute(
                "UPDATE actions SET outcome = ?, reason = ?, detail = ?, finished_at = ? WHERE id = ?",
                (outcome, reason, json.dumps(detail, sort_keys=True, default=str), finished, action_id),
            )
            row = db.execute("SELECT incident_id, action, target FROM actions WHERE id = ?", (action_id,)).fetchone()
            if row and row["incident_id"] is not None and outcome != "pending":
                text = f"{row['action']} on {row['target']}: {outcome}" + (f" ({reason})" if reason else "")
                if detail.get("steps"):
                    text += ": " + "; ".join(detail["steps"])
                self.add_event(db, row["incident_id"], at, "action", text, action_id=action_id)

    def acted_since(self, since: float, target: str | None = None) -> list[float]:
        """When actions that really ran (started or finished as acted/failed) were decided."""
        sql = "SELECT decided_at FROM actions WHERE decided_at >= ? AND outcome IN ('started', 'acted', 'failed')"
        parameters: list[Any] = [since]
        if target is not None:
            sql += " AND target = ?"
            parameters.append(target)
        return [row["decided_at"] for row in self.query(sql + " ORDER BY decided_at", parameters)]

    def interrupt_unfinished(self, at: float) -> list[dict[str, Any]]:
        """Actions a previous process left pending or started: marked interrupted, and returned."""
        unfinished = self.query("SELECT * FROM actions WHERE outcome IN ('pending', 'started', 'deferred')")
        for action in unfinished:
            self.update_action(action["id"], "interrupted", at, "the service stopped before the action finished")
        return unfinished
