"""The calls remediation makes to a Ray cluster: its dashboard's Job and Serve REST APIs, nothing else.

=============================  =============================================  ==========================
call                           endpoint                                       used by
=============================  =============================================  ==========================
``jobs()``                     ``GET /api/jobs/``                             scale-down, budget stops
``job(id)``                    ``GET /api/jobs/{id}``                         restart-failed-job
``stop_job(id)``               ``POST /api/jobs/{id}/stop``                   scale-down, budget stops
``submit_job(...)``            ``POST /api/jobs/``                            restart-failed-job
``serve()``                    ``GET /api/serve/applications/``               scale-down, Serve restarts
``shutdown_serve()``           ``DELETE /api/serve/applications/``            scale-down
``deploy_serve(config)``       ``PUT /api/serve/applications/``               restart-serve-deployment
=============================  =============================================  ==========================

Plain HTTP with explicit timeouts, as ``raylens.ray.state`` talks to the dashboard: no ``ray.init()``
and no Ray install needed where the service runs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

ACTIVE_JOB_STATUSES = ("PENDING", "RUNNING")


class RayApiError(RuntimeError):
    """A call to the dashboard failed; the message names the call and Ray's answer."""


class RayDashboard:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        try:
            response = self._session.request(method, self.url + path, json=body, timeout=timeout or self.timeout)
        except requests.RequestException as error:
            raise RayApiError(f"{method} {self.url}{path}: {type(error).__name__}: {error}") from None
        if response.status_code >= 400:
            raise RayApiError(f"{method} {self.url}{path}: HTTP {response.status_code}: {response.text[:300]}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def jobs(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/jobs/") or [])

    def job(self, submission_id: str) -> dict[str, Any]:
        # Ids come from alert labels: quoted, so `../` cannot reach another endpoint.
        return dict(self._call("GET", f"/api/jobs/{quote(submission_id, safe='')}"))

    def stop_job(self, submission_id: str) -> bool:
        answer = self._call("POST", f"/api/jobs/{quote(submission_id, safe='')}/stop")
        return bool(answer.get("stopped")) if isinstance(answer, dict) else False

    def submit_job(
        self, entrypoint: str, submission_id: str, metadata: dict[str, str], runtime_env: dict[str, Any] | None
    ) -> str:
        body: dict[str, Any] = {"entrypoint": entrypoint, "submission_id": submission_id, "metadata": metadata}
        if runtime_env:
            body["runtime_env"] = runtime_env
        answer = self._call("POST", "/api/jobs/", body)
        return str(answer.get("submission_id") or submission_id)

    def serve(self) -> dict[str, Any]:
        return dict(self._call("GET", "/api/serve/applications/") or {})

    def shutdown_serve(self) -> None:
        # Serve's controller tears every application down before answering; give it time.
        self._call("DELETE", "/api/serve/applications/", timeout=max(self.timeout, 60))

    def deploy_serve(self, config: dict[str, Any]) -> None:
        self._call("PUT", "/api/serve/applications/", config, timeout=max(self.timeout, 60))


def job_sort_key(job: dict[str, Any]) -> tuple[int, str]:
    """Newest first when sorted in reverse: start time (ms), then submission id."""
    return (int(job.get("start_time") or 0), str(job.get("submission_id") or job.get("job_id") or ""))
