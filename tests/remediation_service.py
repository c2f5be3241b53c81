"""``raylens remediate`` as a child process for tests, and Alertmanager v4 payloads to post to it.

The payloads have the exact shape Alertmanager 0.25 sends (recorded from a real delivery in
test_remediation_e2e.py); tests post them directly where driving a real Alertmanager would only add
minutes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess


def rfc3339(seconds: float | None) -> str:
    if seconds is None:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e9):09d}Z"


def alert(
    labels: dict[str, str],
    starts_at: float,
    ends_at: float | None = None,
    annotations: dict[str, str] | None = None,
    expr: str = "vector(1)",
) -> dict[str, Any]:
    fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "status": "resolved" if ends_at is not None else "firing",
        "labels": labels,
        "annotations": annotations or {"summary": f"{labels['alertname']} summary", "description": "test alert"},
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(ends_at),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=" + requests.utils.quote(expr) + "&g0.tab=1",
        "fingerprint": fingerprint,
    }


def notification(alerts: list[dict[str, Any]], group_key: str | None = None, receiver: str = "remediation") -> dict:
    common = dict(set.intersection(*(set(a["labels"].items()) for a in alerts)))
    group_labels = {key: value for key, value in common.items() if key == "alertname"}
    return {
        "receiver": receiver,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": group_key or '{}/{remediation=~".+"}:' + json.dumps(group_labels, sort_keys=True),
        "truncatedAlerts": 0,
    }


@dataclass
class RunningRemediation:
    process: ManagedProcess
    address: str
    token: str
    audit_log: Path
    database: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def post(self, payload: Any, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return requests.post(f"{self.url}/webhook", json=payload, headers=headers, timeout=30, **kwargs)

    def audit(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line.strip()]
        except OSError:
            return []

    def wait_for_audit(self, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.audit():
                if predicate(entry):
                    return entry
            time.sleep(0.2)
        raise AssertionError(f"no matching audit record after {timeout}s; got {self.audit()[-10:]}")

    def final_action(self, action_id: int, timeout: float = 90.0) -> dict[str, Any]:
        """The last audit record of an action once it finished (acted, dry_run, skipped or failed)."""
        return self.wait_for_audit(
            lambda entry: (
                entry.get("action") == "remediation_action"
                and entry.get("action_id") == action_id
                and entry["outcome"] in ("acted", "dry_run", "skipped", "failed")
            ),
            timeout,
        )


def write_config(tmp_path: Path, remediation: dict[str, Any], name: str = "raylens.yaml") -> tuple[Path, str]:
    """A raylens.yaml with this remediation section and a fresh bearer token file."""
    token_file = tmp_path / "remediate.token"
    if not token_file.exists():
        token_file.write_text(secrets.token_hex(24) + "\n")
    section = {"bearer_token_file": str(token_file), "database": str(tmp_path / "incidents.sqlite"), **remediation}
    config = tmp_path / name
    config.write_text(yaml.safe_dump({"remediation": section}))
    return config, token_file.read_text().strip()


@contextmanager
def running_remediation(
    tmp_path: Path, remediation: dict[str, Any], *args: str, port: int | None = None, scheme: str = "http"
) -> Iterator[RunningRemediation]:
    """Start ``python -m raylens remediate`` with this remediation section on a loopback port."""
    config, token = write_config(tmp_path, remediation)
    address = f"127.0.0.1:{port or free_port()}"
    audit_log = tmp_path / "audit.jsonl"
    argv = [
        sys.executable,
        "-m",
        "raylens",
        "remediate",
        f"--config.file={config}",
        f"--web.listen-address={address}",
        *args,
    ]
    process = ManagedProcess(
        "remediate",
        argv,
        tmp_path / "remediate.log",
        f"{scheme}://{address}/healthz",
        env={"RAYLENS_AUDIT_LOG": str(audit_log)},
    )
    process.start()
    try:
        process.wait_ready(timeout=30)
        yield RunningRemediation(process, address, token, audit_log, tmp_path / "incidents.sqlite")
    finally:
        process.stop()
