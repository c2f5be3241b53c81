"""The exporter's HTTP surface through the real server process: exposition, negotiation, TLS, auth, errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from raylens.stack.ports import free_port
from services import running_exporter


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory):
    with running_exporter(tmp_path_factory.mktemp("exporter"), "--log.format=json") as running:
        yield running


def test_exposition_is_promtool_clean(exporter) -> None:
    body = exporter.scrape()
    result = subprocess.run(["promtool", "check", "metrics"], input=body.encode(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""
    assert 'raylens_scrape_collector_success{collector="node"} 1.0' in body
    assert "raylens_exporter_build_info{" in body
    assert "process_resident_memory_bytes" in body


def test_gzip_when_asked(exporter) -> None:
    response = requests.get(f"{exporter.url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    assert response.headers["Content-Encoding"] == "gzip"
    raw = response.raw.read()
    assert b"raylens_node_cpu_seconds_total" in gzip.decompress(raw)


def test_openmetrics_negotiation(exporter) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response = requests.get(f"{exporter.url}/metrics", headers={"Accept": accept}, timeout=10)
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert "# TYPE raylens_node info" in response.text


def test_name_filter(exporter) -> None:
    response = requests.get(f"{exporter.url}/metrics", params={"name[]": "raylens_node_load1"}, timeout=10)
    samples = [line for line in response.text.splitlines() if line and not line.startswith("#")]
    assert samples and all(line.startswith("raylens_node_load1 ") for line in samples)


def test_landing_health_and_unknown_paths(exporter) -> None:
    landing = requests.get(exporter.url + "/", timeout=10)
    assert landing.status_code == 200 and 'href="metrics"' in landing.text and "node" in landing.text
    assert requests.get(exporter.url + "/healthz", timeout=10).text == "ok\n"
    assert requests.get(exporter.url + "/nope", timeout=10).status_code == 404


def test_logs_are_json_lines(exporter) -> None:
    lines = [line for line in exporter.process.log_path.read_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]
    listening = next(event for event in events if event["msg"] == "listening")
    assert listening["level"] == "info" and listening["collectors"] == ["node"]
    assert listening["address"] == exporter.address


def run_exporter_expecting_failure(*args: str) -> subprocess.CompletedProcess[str]:
    address = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "raylens", "exporter", f"--web.listen-address={address}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{address}/healthz", timeout=2)
    return result


def test_bad_config_fails_at_start_up_naming_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "raylens.yaml"
    config.write_text(yaml.safe_dump({"exporter": {"collectors": ["node", "gpux"]}, "log": {"format": "xml"}}))
    result = run_exporter_expecting_failure(f"--config.file={config}", "--log.level=loud")
    assert result.returncode == 2
    assert "invalid configuration (3 problems)" in result.stderr
    assert f"{config}: exporter.collectors.1: got 'gpux'" in result.stderr
    assert f"{config}: log.format: got 'xml'" in result.stderr
    assert "flag --log.level: log.level: got 'loud'" in result.stderr


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_tls_and_basic_auth_refuse_unauthenticated_scrapes(tmp_path: Path) -> None:
    cert, _ = make_certificate(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    # Relative paths resolve against the web config's folder, as in exporter-toolkit.
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                "basic_auth_users": {"prometheus": hashed},
            }
        )
    )
    address = f"127.0.0.1:{free_port()}"
    from raylens.stack.processes import ManagedProcess

    process = ManagedProcess(
        "exporter",
        [
            sys.executable,
            "-m",
            "raylens",
            "exporter",
            f"--web.listen-address={address}",
            f"--web.config.file={web_config}",
        ],
        tmp_path / "exporter.log",
    )
    process.start()
    try:
        url = f"https://{address}/metrics"
        deadline = time.monotonic() + 20
        while True:
            try:
                unauthenticated = requests.get(url, verify=str(cert), timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, process.log_tail()
                time.sleep(0.2)
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["WWW-Authenticate"].startswith("Basic")
        assert "raylens_" not in unauthenticated.text
        assert requests.get(url, verify=str(cert), auth=("prometheus", "wrong"), timeout=5).status_code == 401
        assert requests.get(url, verify=str(cert), auth=("nobody", "s3cret"), timeout=5).status_code == 401
        good = requests.get(url, verify=str(cert), auth=("prometheus", "s3cret"), timeout=5)
        assert good.status_code == 200 and "raylens_node_cpu_seconds_total" in good.text
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{address}/metrics", timeout=5)  # plain HTTP is not served
    finally:
        process.stop()


def test_bad_web_config_is_reported_with_every_problem(tmp_path: Path) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": "missing.crt",
                    "key_file": "missing.key",
                    "cipher_suites": ["X"],
                },
                "basic_auth_users": {"alice": "plaintext-password"},
            }
        )
    )
    result = run_exporter_expecting_failure(f"--web.config.file={web_config}")
    assert result.returncode == 2
    assert f"{web_config}: tls_server_config.cipher_suites" in result.stderr
    assert f"{web_config}: basic_auth_users: " in result.stderr and "bcrypt hash" in result.stderr
    # Fix those two; the missing files are then named.
    web_config.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": "missing.crt", "key_file": "k"}}))
    result = run_exporter_expecting_failure(f"--web.config.file={web_config}")
    assert result.returncode == 2
    assert f"{web_config}: tls_server_config.cert_file: got '{tmp_path}/missing.crt'" in result.stderr
    assert f"{web_config}: tls_server_config.key_file" in result.stderr
