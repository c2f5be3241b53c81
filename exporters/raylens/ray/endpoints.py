"""What a cluster-role exporter serves besides /metrics: Prometheus ``http_sd`` target lists and a
cluster health summary, both answered from the background refresher's newest snapshot.

Nothing here calls Ray: a request reads ``StateRefresher.current()`` and serialises it, so service
discovery and health checks cost Ray nothing and answer in microseconds however slow the dashboard
is. Routes (JSON)::

    /sd/ray                       Ray's metrics agent on every alive node (as targets/ray.json)
    /sd/raylens?port=9965         the per-node exporter on every alive node (as targets/raylens.json);
                                  &cluster_exporter=HOST:PORT adds the cluster-role exporter
    /sd/serve[?base_url=URL]      every Serve route, for the blackbox exporter (as targets/serve.json)
    /health/cluster               the cluster at a glance; 200 when healthy, 503 otherwise

Before the first snapshot, and for a snapshot whose node listing is older than
``ray.max_state_age_seconds``, the sd routes answer 503: Prometheus then keeps the targets it had
(it never empties a list because of a failed refresh). Prometheus' ``http_sd`` reads exactly the
JSON of ``file_sd``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs

from raylens.ray.discovery import ServeTargets, exporter_target_groups, ray_target_groups
from raylens.ray.snapshot import ClusterSnapshot

# Serve application states that mean users are failing (ray.serve.schema.ApplicationStatus).
_SERVE_FAILING = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})

Response = tuple[int, bytes]


class SnapshotSource(Protocol):
    def current(self) -> ClusterSnapshot | None: ...


class ClusterEndpoints:
    """Routes → handlers over one refresher. ``cluster`` names the cluster (raylens.cluster)."""

    def __init__(
        self,
        source: SnapshotSource,
        cluster: Callable[[], str],
        max_state_age_seconds: float,
        serve: ServeTargets | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._source = source
        self._cluster = cluster
        self._max_age = max_state_age_seconds
        self._serve = serve or ServeTargets()
        self._clock = clock

    def routes(self) -> Mapping[str, Callable[[str], Response]]:
        return {
            "/sd/ray": self._ray,
            "/sd/raylens": self._raylens,
            "/sd/serve": self._serve_targets,
            "/health/cluster": self.health,
        }

    def _fresh(self) -> ClusterSnapshot | None:
        snapshot = self._source.current()
        if snapshot is None:
            return None
        listed_at = snapshot.as_of(["nodes", "node_details"])
        if listed_at is None or self._clock() - listed_at > self._max_age:
            return None
        return snapshot

    def _sd(self, build: Callable[[ClusterSnapshot], list[dict[str, Any]]]) -> Response:
        snapshot = self._fresh()
        if snapshot is None:
            return 503, _json({"error": "no fresh node listing from Ray yet; keep the previous targets"})
        return 200, _json(build(snapshot))

    def _ray(self, query: str) -> Response:
        return self._sd(lambda snapshot: ray_target_groups(snapshot, (), self._cluster()))

    def _raylens(self, query: str) -> Response:
        params = parse_qs(query)
        try:
            port = int(params.get("port", ["9965"])[0])
        except ValueError:
            return 400, _json({"error": "port: expected an integer, e.g. ?port=9965"})
        cluster_exporter = params.get("cluster_exporter", [None])[0]
        return self._sd(lambda snapshot: exporter_target_groups(snapshot, port, self._cluster(), cluster_exporter))

    def _serve_targets(self, query: str) -> Response:
        base_url = parse_qs(query).get("base_url", [None])[0]
        return self._sd(lambda snapshot: self._serve.groups(snapshot, self._cluster(), base_url))

    def summary(self) -> dict[str, Any]:
        """The cluster at a glance (also ``raylens status --json``'s ``cluster`` part)."""
        snapshot = self._source.current()
        now = self._clock()
        problems: list[str] = []
        report: dict[str, Any] = {"cluster": self._cluster(), "checked_at": now}
        if snapshot is None:
            problems.append("Ray has not answered yet")
            return {**report, "healthy": False, "problems": problems}
        listed_at = snapshot.as_of(["nodes"])
        age = None if listed_at is None else round(now - listed_at, 3)
        if age is None or age > self._max_age:
            problems.append(f"no node listing from Ray for over {self._max_age:g}s")
        alive = [node for node in snapshot.nodes if node.alive]
        jobs = Counter(job.status for job in snapshot.jobs)
        serve = {app.name: app.status for app in snapshot.serve.applications} if snapshot.serve else {}
        problems += [
            f"Serve application {name} is {status}" for name, status in serve.items() if status in _SERVE_FAILING
        ]
        failing_sources = {name: status.error for name, status in snapshot.sources.items() if not status.ok}
        return {
            **report,
            "healthy": not problems,
            "problems": problems,
            "ray": {
                "session": snapshot.session_name,
                "version": snapshot.ray_version,
                "dashboard_url": snapshot.dashboard_url,
                "node_listing_age_seconds": age,
                "nodes": {"alive": len(alive), "dead": len(snapshot.nodes) - len(alive)},
                "alive_nodes": sorted(node.ip for node in alive),
                "jobs": dict(sorted(jobs.items())),
                "serve_applications": serve,
                "failing_sources": failing_sources,
            },
        }

    def health(self, query: str = "") -> Response:
        summary = self.summary()
        return (200 if summary["healthy"] else 503), _json(summary)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
