"""Prometheus file_sd target lists for a Ray cluster, so one Prometheus config follows it as it scales.

Three files, all in Prometheus' ``file_sd`` format; the exporter serves the same JSON for
``http_sd`` (``/sd/ray``, ``/sd/raylens``, ``/sd/serve``, see raylens.web.server)::

    targets/ray.json      Ray's own /metrics on every alive node (ip:metrics_export_port), plus the
                          autoscaler and dashboard metrics endpoints Ray registers in its GCS
    targets/raylens.json  the per-node raylens exporter on every alive node (ip:--exporter-port), and
                          the cluster exporter (--cluster-exporter), when asked
    targets/serve.json    every Serve application's HTTP route, as URLs for the blackbox exporter

Every group carries ``cluster`` (raylens.cluster), so one Prometheus holds many clusters. Node
targets carry ``ray_node_id`` (equal to ``node_id`` on raylens_ray_* series) and ``ray_component``.
The raylens job scrapes with ``honor_labels: true``: the exporter's own ``cluster`` label wins, and
the target label names the cluster of ``up``. Serve targets carry ``application`` and
``route_prefix``. Files are replaced atomically, so Prometheus never reads half a file; on a failed
lookup the previous file stays in place.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from raylens.cluster import CLUSTER_LABEL
from raylens.ray.snapshot import ClusterSnapshot

RAY_TARGETS_FILE = "ray.json"
EXPORTER_TARGETS_FILE = "raylens.json"
SERVE_TARGETS_FILE = "serve.json"

TargetGroup = dict[str, Any]


# A node that runs its per-node exporter on a port of its own says so with this Ray node label
# (`ray start --labels=raylens.io/exporter-port=9971`); others use the common --exporter-port.
EXPORTER_PORT_LABEL = "raylens.io/exporter-port"


def node_exporter_port(labels: Mapping[str, str]) -> int | None:
    text = labels.get(EXPORTER_PORT_LABEL, "")
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _labels(cluster: str, **labels: str) -> dict[str, str]:
    return {**({CLUSTER_LABEL: cluster} if cluster else {}), **labels}


def ray_target_groups(
    snapshot: ClusterSnapshot, extra_endpoints: Sequence[tuple[str, str]] = (), cluster: str = ""
) -> list[TargetGroup]:
    """Ray's metrics endpoints: one group per alive node, then ``extra_endpoints`` as
    ``(component, host:port)`` (autoscaler, dashboard)."""
    groups: list[TargetGroup] = []
    for node in sorted(snapshot.alive_nodes, key=lambda node: (not node.is_head, node.ip, node.node_id)):
        if node.metrics_export_port:
            groups.append(
                {
                    "targets": [f"{node.ip}:{node.metrics_export_port}"],
                    "labels": _labels(cluster, ray_component="node", ray_node_id=node.node_id),
                }
            )
    for component, address in extra_endpoints:
        groups.append({"targets": [address], "labels": _labels(cluster, ray_component=component)})
    return groups


def exporter_target_groups(
    snapshot: ClusterSnapshot, exporter_port: int | None, cluster: str = "", cluster_exporter: str | None = None
) -> list[TargetGroup]:
    """The per-node raylens exporter on every alive node, at the same port everywhere, and the
    cluster-role exporter when its address is given."""
    groups = []
    addresses = set()
    for node in snapshot.alive_nodes:
        port = node_exporter_port(node.labels) or exporter_port
        if port:
            addresses.add(f"{node.ip}:{port}")
    if addresses:
        groups.append({"targets": sorted(addresses), "labels": _labels(cluster, raylens_role="node")})
    if cluster_exporter:
        groups.append({"targets": [cluster_exporter], "labels": _labels(cluster, raylens_role="cluster")})
    return groups


def serve_routes(snapshot: ClusterSnapshot, base_url: str | None = None) -> dict[str, tuple[str, str]]:
    """URL → (application, route prefix) of every Serve application with an HTTP route.

    ``base_url`` is how users reach Serve (a load balancer, an ingress); unset, the proxy on the head
    node (or the first healthy proxy) at Serve's HTTP port, at its bind address when that is one.
    """
    serve = snapshot.serve
    if serve is None:
        return {}
    if base_url is None:
        if not serve.http_port:
            return {}
        if serve.http_host and serve.http_host not in ("0.0.0.0", "::", "[::]"):
            host = serve.http_host
        else:
            head = next((node.ip for node in snapshot.alive_nodes if node.is_head), "")
            host = head if head in serve.proxy_ips or not serve.proxy_ips else serve.proxy_ips[0]
        if not host:
            return {}
        base_url = f"http://{host}:{serve.http_port}"
    base = base_url.rstrip("/")
    return {
        base + (app.route_prefix if app.route_prefix.startswith("/") else "/" + app.route_prefix): (
            app.name,
            app.route_prefix,
        )
        for app in serve.applications
        if app.route_prefix
    }


class ServeTargets:
    """Serve probe targets that outlive their application by ``grace_seconds``.

    An application that disappears (deleted, its controller lost) must still be probed for a while:
    otherwise its probe series would simply stop and no alert could say the route is gone. After
    the grace period it leaves the list. Thread-safe; one per discovery loop or exporter.
    """

    def __init__(self, grace_seconds: float = 600.0, clock: Callable[[], float] = time.time):
        self._grace = grace_seconds
        self._clock = clock
        self._seen: dict[str, tuple[str, str, float]] = {}
        self._lock = threading.Lock()

    def groups(self, snapshot: ClusterSnapshot, cluster: str = "", base_url: str | None = None) -> list[TargetGroup]:
        now = self._clock()
        current = serve_routes(snapshot, base_url)
        with self._lock:
            if snapshot.serve is not None:  # an unanswered source says nothing about the routes
                for url, (application, prefix) in current.items():
                    self._seen[url] = (application, prefix, now)
            self._seen = {url: seen for url, seen in self._seen.items() if now - seen[2] <= self._grace}
            routes = sorted(self._seen.items())
        return [
            {"targets": [url], "labels": _labels(cluster, application=application, route_prefix=prefix)}
            for url, (application, prefix, _) in routes
        ]


def ray_service_endpoints(dashboard_url: str, node_targets: set[str], timeout: float) -> list[tuple[str, str]]:
    """Autoscaler and dashboard metrics addresses, from the SD list Ray's dashboard serves
    (``/api/prometheus/sd``: node targets, then ``AutoscalerMetricsAddress`` and
    ``DashboardMetricsAddress`` from the GCS)."""
    response = requests.get(f"{dashboard_url}/api/prometheus/sd", timeout=timeout)
    response.raise_for_status()
    addresses = [address for group in response.json() for address in group.get("targets", [])]
    extra = [address for address in addresses if address not in node_targets]
    # Ray lists the autoscaler's address before the dashboard's (metrics_agent.py).
    names = ["autoscaler", "dashboard"]
    return [(names[index] if index < len(names) else "ray", address) for index, address in enumerate(extra)]


def on_loopback(groups: list[TargetGroup], node_ips: set[str]) -> list[TargetGroup]:
    """``groups`` with every node address replaced by 127.0.0.1, for clusters whose nodes all run on
    this machine (tests, `raylens up`): Ray advertises the host's interface address, and a sandbox
    may not route it."""

    def local(target: str) -> str:
        for ip in node_ips:
            for prefix in (f"{ip}:", f"http://{ip}:", f"https://{ip}:"):
                if target.startswith(prefix):
                    return target.replace(ip, "127.0.0.1", 1)
        return target

    return [{**group, "targets": [local(target) for target in group["targets"]]} for group in groups]


def write_targets(path: Path, groups: list[TargetGroup]) -> bool:
    """Atomically replace ``path`` with ``groups``; returns whether the content changed."""
    text = json.dumps(groups, indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True
