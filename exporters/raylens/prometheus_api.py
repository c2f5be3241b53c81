"""A small client for the Prometheus HTTP query API, with the auth options Prometheus clients use.

Used by ``raylens report``, ``raylens recommend`` and the ``recommend`` collector. It speaks to
anything that implements ``/api/v1/query`` and ``/api/v1/query_range`` (Prometheus 2.x and 3.x,
Thanos Query, Mimir, VictoriaMetrics) and sends queries as POST forms, so year-long report queries
never hit URL length limits. Sample::

    api = PrometheusApi(config.prometheus)
    api.query('sum by (project) (increase(raylens_cost_allocation_dollars_total[30d] @ 1782864000))', 1782864000)
    # [Sample(labels={'project': 'vision'}, value=1234.5), ...]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from raylens.config import ConfigError, ConfigProblem, PrometheusApiConfig
from raylens.config.prometheus import TlsClientConfig


class PrometheusError(Exception):
    """The server could not be reached, refused us, or rejected a query; ``str()`` is for users."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)


def _read_secret(path: Path, source: str, field_path: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(
            [ConfigProblem(source, field_path, str(path), f"cannot read file: {error.strerror}")]
        ) from None


class _ServerNameAdapter(HTTPAdapter):
    """Verifies the server certificate against ``server_name`` instead of the URL's host."""

    def __init__(self, server_name: str):
        self._server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._server_name
        kwargs["assert_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)


def _number(text: str) -> float:
    value = float(text)  # Prometheus sends "NaN", "+Inf" and "-Inf" as strings float() reads
    return value if not math.isnan(value) else math.nan


class PrometheusApi:
    def __init__(
        self, config: PrometheusApiConfig, source: str = "prometheus", session: requests.Session | None = None
    ):
        self.url = config.url
        self.timeout = config.timeout_seconds
        self.warnings: list[str] = []
        session = session or requests.Session()
        if config.basic_auth is not None:
            password = _read_secret(config.basic_auth.password_file, source, "prometheus.basic_auth.password_file")
            session.auth = (config.basic_auth.username, password)
        if config.bearer_token_file is not None:
            token = _read_secret(config.bearer_token_file, source, "prometheus.bearer_token_file")
            session.headers["Authorization"] = f"Bearer {token}"
        tls = config.tls_config or TlsClientConfig()
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError([ConfigProblem(source, f"prometheus.tls_config.{name}", str(path), "no such file")])
        # Passed with every request: a session-wide setting loses to $REQUESTS_CA_BUNDLE in requests.
        self._verify: bool | str = False if tls.insecure_skip_verify else (str(tls.ca_file) if tls.ca_file else True)
        self._cert = (str(tls.cert_file), str(tls.key_file)) if tls.cert_file and tls.key_file else None
        if tls.server_name:
            session.mount("https://", _ServerNameAdapter(tls.server_name))
        session.headers["User-Agent"] = "raylens"
        self._session = session

    def _post(self, endpoint: str, form: dict[str, str]) -> Any:
        try:
            response = self._session.post(
                f"{self.url}/api/v1/{endpoint}", data=form, timeout=self.timeout, verify=self._verify, cert=self._cert
            )
        except requests.exceptions.SSLError as error:
            raise PrometheusError(f"TLS handshake with {self.url} failed: {error}") from None
        except requests.exceptions.Timeout:
            raise PrometheusError(
                f"Prometheus at {self.url} did not answer within {self.timeout:g} s "
                "(prometheus.timeout_seconds)\n  query: " + form.get("query", "")
            ) from None
        except requests.exceptions.RequestException as error:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {type(error).__name__}") from None
        if response.status_code in (401, 403):
            raise PrometheusError(
                f"Prometheus at {self.url} refused the request (HTTP {response.status_code}): check basic_auth or "
                "bearer_token_file"
            )
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(
                f"{self.url}/api/v1/{endpoint} answered HTTP {response.status_code} without the Prometheus API's "
                "JSON: is this the right URL (and path prefix)?"
            ) from None
        if body.get("status") != "success":
            raise PrometheusError(
                f"Prometheus rejected a query ({body.get('errorType', 'error')}): {body.get('error', body)}\n"
                f"  query: {form.get('query', '')}"
            )
        # Warnings mean partial data (a Thanos store down, a limit hit); callers decide whether that is fatal.
        self.warnings += [f"{warning} (query: {form.get('query', '')})" for warning in body.get("warnings", [])]
        return body["data"]

    def query(self, expr: str, at: float) -> list[Sample]:
        """An instant query evaluated at ``at`` (Unix seconds); scalars come back as one unlabelled sample."""
        data = self._post("query", {"query": expr, "time": f"{at:.3f}"})
        if data["resultType"] == "scalar":
            return [Sample({}, _number(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"expected an instant vector from {expr!r}, got a {data['resultType']}")
        return [Sample(dict(item["metric"]), _number(item["value"][1])) for item in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._post(
            "query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        return [
            Series(dict(item["metric"]), [(float(t), _number(v)) for t, v in item["values"]]) for item in data["result"]
        ]
