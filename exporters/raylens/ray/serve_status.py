"""Ray Serve's application and deployment statuses, for workspace events.

``ClusterSnapshot`` holds no Serve state, so the events recorder asks the dashboard's Serve API
itself (``GET /api/serve/applications/``, the same endpoint ``serve status`` reads), once per new
snapshot and with its own short deadline. A cluster without Serve answers with no applications.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import requests

SERVE_APPLICATIONS_PATH = "/api/serve/applications/"


@dataclass(frozen=True)
class DeploymentStatus:
    status: str
    """``UPDATING``, ``HEALTHY``, ``UNHEALTHY``, ``DEPLOY_FAILED``, ``UPSCALING``, ``DOWNSCALING``…"""
    trigger: str = ""
    message: str = ""


@dataclass(frozen=True)
class ApplicationStatus:
    status: str
    """``NOT_STARTED``, ``DEPLOYING``, ``DEPLOY_FAILED``, ``RUNNING``, ``UNHEALTHY``, ``DELETING``."""
    message: str = ""
    last_deployed_time: float | None = None
    deployments: Mapping[str, DeploymentStatus] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ServeSnapshot:
    applications: Mapping[str, ApplicationStatus] = field(default_factory=lambda: MappingProxyType({}))


class ServeStatusUnavailable(RuntimeError):
    pass


def serve_snapshot_from_api(body: Mapping[str, Any]) -> ServeSnapshot:
    """``ServeInstanceDetails`` JSON as the dashboard returns it (missing fields tolerated)."""
    applications = {}
    for name, app in (body.get("applications") or {}).items():
        deployments = {
            str(deployment_name): DeploymentStatus(
                str(deployment.get("status") or ""),
                str(deployment.get("status_trigger") or ""),
                str(deployment.get("message") or ""),
            )
            for deployment_name, deployment in (app.get("deployments") or {}).items()
        }
        deployed = app.get("last_deployed_time_s")
        applications[str(name)] = ApplicationStatus(
            str(app.get("status") or ""),
            str(app.get("message") or ""),
            float(deployed) if isinstance(deployed, int | float) else None,
            MappingProxyType(deployments),
        )
    return ServeSnapshot(MappingProxyType(applications))


def fetch_serve_status(dashboard_url: str, timeout: float, session: requests.Session | None = None) -> ServeSnapshot:
    """Serve's statuses now; raises ``ServeStatusUnavailable`` with the reason."""
    http = session or requests
    url = dashboard_url.rstrip("/") + SERVE_APPLICATIONS_PATH
    try:
        response = http.get(url, timeout=timeout)
        if response.status_code != 200:
            raise ServeStatusUnavailable(f"{url}: HTTP {response.status_code}")
        body = response.json()
    except (requests.RequestException, ValueError) as error:
        raise ServeStatusUnavailable(f"{url}: {type(error).__name__}: {error}") from None
    if not isinstance(body, dict):
        raise ServeStatusUnavailable(f"{url}: expected a JSON object")
    return serve_snapshot_from_api(body)
