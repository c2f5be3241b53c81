"""The ``prometheus`` section: the Prometheus HTTP API that ``raylens report``, ``raylens recommend``
and the ``recommend`` collector read.

Field names follow Prometheus's own client settings (``http_config``: ``basic_auth``,
``bearer_token_file``, ``tls_config``), so the block a user already has for a remote-read client,
Grafana agent or ``promtool`` fits here unchanged. Secrets are read from files only, never inline.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from raylens.config.base import _Section

DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"


class BasicAuthConfig(_Section):
    username: str = Field(min_length=1, description="User name sent with every request.")
    password_file: Path = Field(description="File holding the password (trailing newline ignored).")


class TlsClientConfig(_Section):
    ca_file: Path | None = Field(None, description="CA bundle to verify the server with; unset: system CAs.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS); needs key_file.")
    key_file: Path | None = Field(None, description="Client key (mutual TLS); needs cert_file.")
    server_name: str | None = Field(None, description="Name to verify the server certificate against.")
    insecure_skip_verify: bool = Field(False, description="Do not verify the server certificate (testing only).")

    @model_validator(mode="after")
    def _pair(self) -> TlsClientConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("expected cert_file and key_file together (mutual TLS), or neither")
        return self


class PrometheusApiConfig(_Section):
    url: str = Field(
        DEFAULT_PROMETHEUS_URL,
        description="Base URL of a Prometheus-API server (Prometheus, Thanos Query, Mimir with its prefix, "
        "VictoriaMetrics): http(s)://host:port[/path].",
    )
    basic_auth: BasicAuthConfig | None = Field(
        None, description="`{username, password_file}` for servers behind basic auth."
    )
    bearer_token_file: Path | None = Field(
        None, description="File holding a bearer token sent as `Authorization: Bearer ...`."
    )
    tls_config: TlsClientConfig | None = Field(
        None,
        description="`{ca_file, cert_file, key_file, server_name, insecure_skip_verify}` for https URLs; unset: "
        "verify against the system's CAs.",
    )
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="Per query; raise it for year-long reports.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host, e.g. 'http://127.0.0.1:9090'")
        if parts.query or parts.fragment:
            raise ValueError("expected a base URL without ?query or #fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> PrometheusApiConfig:
        if self.basic_auth is not None and self.bearer_token_file is not None:
            raise ValueError("expected basic_auth or bearer_token_file, not both")
        return self
