"""Instant queries against Prometheus: live re-checks before acting, and incident impact figures."""

from __future__ import annotations

from typing import Any

import requests


class PrometheusError(RuntimeError):
    """Prometheus could not be asked, or refused the query; the message says which."""


def selector(labels: dict[str, str]) -> str:
    """``{a="x", b="y"}`` with values escaped as PromQL string literals."""
    parts = []
    for name, value in sorted(labels.items()):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{name}="{escaped}"')
    return "{" + ", ".join(parts) + "}"


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """Each series of an instant vector (or one unlabelled scalar) with its value."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=self.timeout)
            body = response.json()
        except (requests.RequestException, ValueError) as error:
            raise PrometheusError(f"{self.url}: {type(error).__name__}: {error}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{self.url} refused {expr!r}: {body.get('error', response.status_code)}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"expected an instant vector from {expr!r}, got a {data['resultType']}")
        return [(sample["metric"], float(sample["value"][1])) for sample in data["result"]]

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of ``expr`` (summed if several series), or ``None`` when it returns nothing."""
        rows = self.query(expr, at)
        return sum(value for _, value in rows) if rows else None
