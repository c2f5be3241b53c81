"""Prometheus file_sd target lists for a Ray cluster, so one Prometheus config follows it as it scales.

Two files, both in Prometheus' ``file_sd`` format (the same JSON serves ``http_sd``)::

    targets/ray.json      Ray's own /metrics on every alive node (ip:metrics_export_port), plus the
                          autoscaler and dashboard metrics endpoints Ray registers in its GCS
    targets/raylens.json  the raylens exporter on every alive node (ip:--exporter-port), when asked

Node targets carry ``ray_node_id`` (equal to ``node_id`` on raylens_ray_* series) and
``ray_component``; the raylens file carries no labels, because target labels that collide with
series labels get renamed to ``exported_*``. Files are replaced atomically, so Prometheus never
reads half a file; on a failed lookup the previous file stays in place.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from raylens.ray.snapshot import ClusterSnapshot

RAY_TARGETS_FILE = "ray.json"
EXPORTER_TARGETS_FILE = "raylens.json"

TargetGroup = dict[str, Any]


def ray_target_groups(snapshot: ClusterSnapshot, extra_endpoints: Sequence[tuple[str, str]] = ()) -> list[TargetGroup]:
    """Ray's metrics endpoints: one group per alive node, then ``extra_endpoints`` as
    ``(component, host:port)`` (autoscaler, dashboard)."""
    groups: list[TargetGroup] = []
    for node in sorted(snapshot.alive_nodes, key=lambda node: (not node.is_head, node.ip, node.node_id)):
        if node.metrics_export_port:
            groups.append(
                {
                    "targets": [f"{node.ip}:{node.metrics_export_port}"],
                    "labels": {"ray_component": "node", "ray_node_id": node.node_id},
                }
            )
    for component, address in extra_endpoints:
        groups.append({"targets": [address], "labels": {"ray_component": component}})
    return groups


def exporter_target_groups(snapshot: ClusterSnapshot, exporter_port: int) -> list[TargetGroup]:
    """The raylens exporter on every alive node, at the same port everywhere."""
    addresses = sorted({f"{node.ip}:{exporter_port}" for node in snapshot.alive_nodes})
    return [{"targets": addresses, "labels": {}}] if addresses else []


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
