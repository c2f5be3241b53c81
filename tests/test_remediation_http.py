"""``raylens remediate`` through its real HTTP server: who may post, what is refused (and audited),
incidents that outlive a restart, commands run with the alert's labels, and its metrics."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import requests
import yaml
from remediation_service import alert, notification, running_remediation
from test_exporter_http import make_certificate

from raylens.remediation.store import Store

NOW = time.time()


def raylens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raylens", *args], capture_output=True, text=True, timeout=60, check=False
    )


def raw_post_without_length(address: str, token: str) -> int:
    """HTTP/1.0 with a body but no Content-Length: what a broken or hostile client sends."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        request = f"POST /webhook HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n{{}}"
        connection.sendall(request.encode())
        connection.shutdown(socket.SHUT_WR)
        answer = connection.recv(200).decode()
    return int(answer.split()[1])


def test_unauthenticated_oversized_and_malformed_requests_are_refused_audited_and_change_nothing(
    tmp_path: Path,
) -> None:
    valid = notification([alert({"alertname": "RaylensNodeDown", "severity": "critical"}, NOW - 60)])
    with running_remediation(tmp_path, {}) as service:
        url = f"{service.url}/webhook"
        answers = {
            "no credentials": requests.post(url, json=valid, timeout=10).status_code,
            "wrong token": service.post(valid, token="not-the-token-at-all").status_code,
            "basic instead of bearer": requests.post(url, json=valid, auth=("am", "x"), timeout=10).status_code,
            "over 1 MiB": service.post({"padding": "x" * (1024 * 1024)}).status_code,
            "no length": raw_post_without_length(service.address, service.token),
            "not JSON": requests.post(
                url, data=b"{not json", headers={"Authorization": f"Bearer {service.token}"}, timeout=10
            ).status_code,
            "wrong version": service.post({**valid, "version": "3"}).status_code,
            "no alerts": service.post({**valid, "alerts": []}).status_code,
            "a list": service.post([valid]).status_code,
            "wrong path": requests.post(
                f"{service.url}/", json=valid, headers={"Authorization": f"Bearer {service.token}"}, timeout=10
            ).status_code,
        }
        metrics = requests.get(
            f"{service.url}/metrics", headers={"Authorization": f"Bearer {service.token}"}, timeout=10
        ).text
        unauthenticated_metrics = requests.get(f"{service.url}/metrics", timeout=10).status_code
    assert answers == {
        "no credentials": 401,
        "wrong token": 401,
        "basic instead of bearer": 401,
        "over 1 MiB": 413,
        "no length": 411,
        "not JSON": 400,
        "wrong version": 400,
        "no alerts": 400,
        "a list": 400,
        "wrong path": 404,
    }
    assert unauthenticated_metrics == 401
    refused = [entry for entry in service.audit() if entry["action"] == "remediation_webhook"]
    assert [entry["status"] for entry in refused] == [401, 401, 401, 413, 411, 400, 400, 400, 400, 404, 401]
    assert all(entry["outcome"] == "refused" and entry["reason"] for entry in refused)
    assert refused[1]["reason"] == "wrong bearer token" and refused[0]["actor"] == "anonymous"
    assert "version" in refused[6]["reason"]
    assert not any(service.token in json.dumps(entry) for entry in service.audit())  # never the secret
    assert Store(service.database).incidents() == []
    for outcome, count in (("unauthorized", 3), ("too_large", 1), ("malformed", 4), ("accepted", 0)):
        assert f'raylens_remediation_webhooks_total{{outcome="{outcome}"}} {count}.0' in metrics, metrics


def test_basic_auth_over_tls_from_the_exporter_toolkit_web_config(tmp_path: Path) -> None:
    cert, _ = make_certificate(tmp_path)
    web_config = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                "basic_auth_users": {"alertmanager": hashed},
            }
        )
    )
    payload = notification([alert({"alertname": "A", "severity": "warning"}, NOW - 60)])
    section = {"bearer_token_file": None, "web_config_file": str(web_config)}
    with running_remediation(tmp_path, section, scheme="https") as service:
        url = f"https://{service.address}/webhook"
        wrong = requests.post(url, json=payload, auth=("alertmanager", "nope"), verify=str(cert), timeout=10)
        good = requests.post(url, json=payload, auth=("alertmanager", "s3cret"), verify=str(cert), timeout=10)
    assert (wrong.status_code, good.status_code) == (401, 200)
    assert good.json()["opened"] is True
    accepted = [entry for entry in service.audit() if entry.get("outcome") == "accepted"]
    assert [entry["actor"] for entry in accepted] == ["alertmanager"]


def test_without_any_authentication_the_service_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "raylens.yaml"
    config.write_text(yaml.safe_dump({"remediation": {"database": str(tmp_path / "db.sqlite")}}))
    result = raylens("remediate", f"--config.file={config}")
    assert result.returncode == 2
    assert f"{config}: remediation.bearer_token_file: expected a bearer token file" in result.stderr


def test_incidents_and_audit_records_outlive_a_restart_with_correct_durations(tmp_path: Path) -> None:
    labels = {"alertname": "RaylensServeErrorBudgetBurn", "severity": "critical", "application": "classifier"}
    started, ended = NOW - 1300, NOW - 280
    with running_remediation(tmp_path, {}) as service:
        first = service.post(notification([alert(labels, started)]))
        assert first.status_code == 200 and first.json()["opened"]
    before = service.audit()
    with running_remediation(tmp_path, {}) as service:
        resolved = service.post(notification([alert(labels, started, ends_at=ended)]))
        again = service.post(notification([alert(labels, started, ends_at=ended)]))
    assert resolved.json()["resolved"] and resolved.json()["incident"] == first.json()["incident"]
    assert again.json()["incident"] == first.json()["incident"] and not again.json()["resolved"]
    assert service.audit()[: len(before)] == before
    assert [entry["action"] for entry in service.audit()].count("incident_opened") == 1

    database = f"--db={service.database}"
    listing = raylens("incidents", "list", database)
    assert listing.returncode == 0, listing.stderr
    rows = listing.stdout.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[:3] == ["1", "resolved", "critical"], listing.stdout
    assert "17m" in rows[0]  # resolved 1020 s after it started firing
    shown = raylens("incidents", "show", "1", database)
    assert "RaylensServeErrorBudgetBurn (application=classifier, severity=critical) started firing" in shown.stdout
    acked = raylens("incidents", "ack", "1", "--by", "alice", database)
    assert "acknowledged by alice" in acked.stdout
    draft = tmp_path / "postmortem.md"
    written = raylens("incidents", "postmortem", "1", database, f"--output={draft}")
    assert written.returncode == 0, written.stderr
    text = draft.read_text()
    assert "| Resolved |" in text and "time to resolve 17m" in text
    assert "## Timeline" in text and "by alice" in text
    missing = raylens("incidents", "show", "99", database)
    assert missing.returncode == 2 and "no incident 99" in missing.stderr


def test_run_command_gets_the_alert_labels_as_environment_and_a_dry_run_runs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "environment.json"
    dump = (
        "import json, os, sys; "
        "json.dump({k: v for k, v in os.environ.items() if k.startswith('RAYLENS_')}, open(sys.argv[1], 'w'))"
    )
    section = {
        "commands": {"dump-env": {"argv": [sys.executable, "-c", dump, str(out)], "timeout_seconds": 30}},
        "rules": [{"match": {"alertname": "DiskFull"}, "action": "run-command", "command": "dump-env"}],
    }
    labels = {"alertname": "DiskFull", "severity": "warning", "device": "$(touch pwned); sda1", "instance": "n1"}
    with running_remediation(tmp_path, section) as service:
        answer = service.post(notification([alert(labels, NOW - 30)])).json()
        dry = service.final_action(answer["decisions"][0]["action_id"])
    assert dry["outcome"] == "dry_run" and dry["steps"] == [f"would run dump-env: {sys.executable} -c {dump} {out}"]
    assert not out.exists()
    with running_remediation(tmp_path, section, "--no-dry-run") as service:
        answer = service.post(notification([alert(labels, NOW - 10)])).json()
        acted = service.final_action(answer["decisions"][0]["action_id"])
    assert acted["outcome"] == "acted", acted
    environment = json.loads(out.read_text())
    assert environment["RAYLENS_LABEL_ALERTNAME"] == "DiskFull"
    assert environment["RAYLENS_LABEL_DEVICE"] == "$(touch pwned); sda1"  # a value, never shell input
    assert environment["RAYLENS_ACTION"] == "run-command" and environment["RAYLENS_INCIDENT_ID"] == "1"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_metrics_are_promtool_clean(tmp_path: Path) -> None:
    with running_remediation(tmp_path, {}) as service:
        service.post(notification([alert({"alertname": "A", "severity": "critical"}, NOW - 5)]))
        text = requests.get(
            f"{service.url}/metrics", headers={"Authorization": f"Bearer {service.token}"}, timeout=10
        ).text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert 'raylens_incidents_open{severity="critical"} 1.0' in text
    assert "raylens_remediation_dry_run 1.0" in text
