"""raylens's own audit trail: one JSON object a line for each thing raylens did (who, what, when).

Every command that changes something or acts on a cluster records it here: config loaded, rules
built, reports run, remediation decisions. The file is the compliance export (docs/logs.md):
append-only JSON lines, each with ``ts`` (UTC, RFC 3339), ``actor`` (the OS user, or the
authenticated caller for services), ``action``, ``outcome`` and action-specific fields.

Where it goes: ``$RAYLENS_AUDIT_LOG`` when set, else ``$XDG_STATE_HOME/raylens/audit.jsonl``
(``~/.local/state/raylens/audit.jsonl``). Set ``RAYLENS_AUDIT_LOG=off`` to record nothing (tests
of unrelated commands). A failed write is logged, never raised: auditing must not stop the action.

Retention: kept forever unless ``$RAYLENS_AUDIT_RETENTION_DAYS`` is set; then records older than
that are dropped the first time a process records something (compliance regimes differ: ship the
file to your log store and keep it there as long as yours requires).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("raylens.audit")

AUDIT_ENVIRONMENT_VARIABLE = "RAYLENS_AUDIT_LOG"
RETENTION_ENVIRONMENT_VARIABLE = "RAYLENS_AUDIT_RETENTION_DAYS"
_lock = threading.Lock()
_pruned: set[Path] = set()


def audit_log_path() -> Path | None:
    """Where audit records go, or ``None`` when auditing is switched off."""
    configured = os.environ.get(AUDIT_ENVIRONMENT_VARIABLE, "")
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "raylens" / "audit.jsonl"


def current_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def record(action: str, outcome: str = "ok", actor: str | None = None, **details: Any) -> dict[str, Any]:
    """Append one audit record and return it. ``details`` must be JSON-serialisable (else ``str``)."""
    now = time.time()
    entry: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
        "actor": actor or current_actor(),
        "action": action,
        "outcome": outcome,
        **details,
    }
    path = audit_log_path()
    if path is None:
        return entry
    line = json.dumps(entry, default=str, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _lock, path.open("a", encoding="utf-8") as file:
            file.write(line)
    except OSError as error:
        log.warning("cannot write the audit log", extra={"path": str(path), "error": str(error)})
    _apply_retention(path, now)
    return entry


def _apply_retention(path: Path, now: float) -> None:
    raw = os.environ.get(RETENTION_ENVIRONMENT_VARIABLE, "")
    if not raw or path in _pruned:
        return
    _pruned.add(path)
    try:
        days = float(raw)
    except ValueError:
        log.warning(
            "ignoring a retention that is not a number of days",
            extra={"variable": RETENTION_ENVIRONMENT_VARIABLE, "value": raw},
        )
        return
    from raylens.jsonl import prune_older_than

    try:
        prune_older_than(path, now - days * 86400)
    except OSError as error:
        log.warning("cannot prune the audit log", extra={"path": str(path), "error": str(error)})


def file_fingerprint(path: Path | None) -> dict[str, Any]:
    """``config_file`` and its ``config_sha256`` for a record (which content was acted on)."""
    if path is None:
        return {"config_file": None}
    import hashlib

    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        digest = None
    return {"config_file": str(path), "config_sha256": digest}
