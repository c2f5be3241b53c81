"""raylens's audit trail: the commands that load config or generate rules and dashboards record who
did what, when, with which input, in append-only JSON lines; retention is opt-in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from raylens import audit
from raylens.cli import main
from raylens.jsonl import rfc3339
from services import running_exporter


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv(audit.AUDIT_ENVIRONMENT_VARIABLE, str(path))
    return path


def test_exporter_start_records_the_config_it_loaded(tmp_path: Path, trail: Path) -> None:
    config = tmp_path / "raylens.yaml"
    config.write_text("exporter:\n  collectors: [node]\n")
    with running_exporter(tmp_path, f"--config.file={config}"):
        pass
    (loaded,) = records(trail)
    assert loaded["action"] == "config_loaded" and loaded["outcome"] == "ok" and loaded["command"] == "exporter"
    assert loaded["config_file"] == str(config) and loaded["collectors"] == ["node"]
    import hashlib

    assert loaded["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert loaded["actor"] == audit.current_actor() and loaded["ts"].endswith("Z")


def test_a_rejected_config_is_recorded_too(tmp_path: Path, trail: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("exporter:\n  collectors: [nodes]\n")
    assert main(["exporter", f"--config.file={config}"]) == 2
    (rejected,) = records(trail)
    assert rejected["action"] == "config_loaded" and rejected["outcome"] == "rejected" and rejected["problems"] >= 1


def test_dashboards_build_is_recorded(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "build"]) == 0
    (built,) = records(trail)
    assert built["action"] == "dashboards_built" and "logs_events" in built["dashboards"]
    assert built["changed"] == []  # the committed files are fresh


def test_retention_is_opt_in_and_drops_only_old_records(trail: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = {"ts": rfc3339(time.time() - 400 * 86400), "action": "rules_built", "outcome": "ok", "actor": "x"}
    trail.write_text(json.dumps(old) + "\n")
    audit.record("report_run", report="weekly")
    assert [entry["action"] for entry in records(trail)] == ["rules_built", "report_run"]
    audit._pruned.clear()
    monkeypatch.setenv(audit.RETENTION_ENVIRONMENT_VARIABLE, "365")
    audit.record("report_run", report="monthly")
    assert [entry.get("report") for entry in records(trail)] == ["weekly", "monthly"]
