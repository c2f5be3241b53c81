"""The Prometheus API client and its configuration: errors users can act on, and where the URL comes from."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from raylens.config import ConfigError, PrometheusApiConfig, load_config
from raylens.prometheus_api import PrometheusApi, PrometheusError


@contextmanager
def answering(status: int, body: bytes, content_type: str = "text/html") -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_the_prometheus_api_is_named_as_such() -> None:
    expected = "without the Prometheus API's JSON: is this the right URL"
    with answering(404, b"<html>Grafana</html>") as url, pytest.raises(PrometheusError, match=expected):
        PrometheusApi(PrometheusApiConfig(url=url)).query("up", 0)


def test_a_rejected_query_quotes_prometheus_and_the_query() -> None:
    body = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode()
    with answering(400, body, "application/json") as url, pytest.raises(PrometheusError) as caught:
        PrometheusApi(PrometheusApiConfig(url=url)).query("sum(", 0)
    assert "(bad_data): parse error" in str(caught.value) and "query: sum(" in str(caught.value)


def test_warnings_are_kept_for_the_caller() -> None:
    body = json.dumps({"status": "success", "warnings": ["store down"], "data": {"resultType": "vector", "result": []}})
    with answering(200, body.encode(), "application/json") as url:
        api = PrometheusApi(PrometheusApiConfig(url=url))
        assert api.query("up", 0) == []
    assert api.warnings == ["store down (query: up)"]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"url": "prometheus:9090"}, "expected an http:// or https:// URL"),
        ({"url": "http://p:9090/?x=1"}, "without ?query"),
        ({"basic_auth": {"username": "a", "password_file": "/p"}, "bearer_token_file": "/t"}, "not both"),
        ({"tls_config": {"cert_file": "/c"}}, "cert_file and key_file together"),
        ({"timeout_seconds": 0}, "greater than 0"),
    ],
)
def test_bad_prometheus_settings_name_the_file_and_field(tmp_path: Path, section: dict, message: str) -> None:
    path = tmp_path / "raylens.yaml"
    path.write_text(yaml.safe_dump({"prometheus": section}))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(path) in str(caught.value) and "prometheus" in str(caught.value) and message in str(caught.value)


def test_a_missing_ca_file_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    config = PrometheusApiConfig(url="https://p:9090", tls_config={"ca_file": tmp_path / "nope.pem"})
    with pytest.raises(ConfigError, match=r"prometheus\.tls_config\.ca_file: got '.*nope\.pem': no such file"):
        PrometheusApi(config, "raylens.yaml")


def test_the_url_comes_from_flag_environment_file_then_a_running_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from raylens.prometheus_flags import add_prometheus_flags, load_with_prometheus_flags

    parser = argparse.ArgumentParser()
    add_prometheus_flags(parser)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("RAYLENS_PROMETHEUS_URL", raising=False)
    monkeypatch.delenv("RAYLENS_CONFIG_FILE", raising=False)
    state = tmp_path / "raylens"
    state.mkdir()
    # A stack `raylens up` recorded, whose Prometheus PID is alive (this test's own process).
    (state / "stack.json").write_text(
        json.dumps(
            {"components": [{"name": "prometheus", "pid": os.getpid()}], "urls": {"prometheus": "http://stack:9091"}}
        )
    )
    assert load_with_prometheus_flags(parser.parse_args([])).prometheus.url == "http://stack:9091"
    config = tmp_path / "raylens.yaml"
    config.write_text(yaml.safe_dump({"prometheus": {"url": "http://file:9090"}}))
    assert (
        load_with_prometheus_flags(parser.parse_args([f"--config.file={config}"])).prometheus.url == "http://file:9090"
    )
    monkeypatch.setenv("RAYLENS_PROMETHEUS_URL", "http://environment:9090")
    assert (
        load_with_prometheus_flags(parser.parse_args([f"--config.file={config}"])).prometheus.url
        == "http://environment:9090"
    )
    flagged = parser.parse_args([f"--config.file={config}", "--prometheus.url=http://flag:9090/"])
    assert load_with_prometheus_flags(flagged).prometheus.url == "http://flag:9090"
    monkeypatch.delenv("RAYLENS_PROMETHEUS_URL")
    (state / "stack.json").write_text(
        json.dumps(
            {"components": [{"name": "prometheus", "pid": 2**22 + 12345}], "urls": {"prometheus": "http://dead:9091"}}
        )
    )
    assert load_with_prometheus_flags(parser.parse_args([])).prometheus.url == "http://127.0.0.1:9090"
