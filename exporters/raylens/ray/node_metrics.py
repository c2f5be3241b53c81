"""Per-node series of the ray collector: the cluster's identity, node lifecycle and logical
resources, and each raylet's object store.

Per-node series carry ``ip`` and ``NodeAddress`` (same value) so they join with Ray's hardware
(``ip``) and core (``NodeAddress``) series. Sample::

    raylens_ray_node_up{NodeAddress="10.0.0.5",SessionName="session_…",ip="10.0.0.5",node_id="ab12…"} 1.0
    raylens_ray_object_store_pressure_ratio{NodeAddress="10.0.0.5",…} 0.42
    raylens_ray_object_store_spilled_bytes_total{NodeAddress="10.0.0.5",…} 2.1e+08
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from raylens.ray.snapshot import ClusterSnapshot, NodeSnapshot

NODE_LABELS = ["SessionName", "node_id", "ip", "NodeAddress"]


def node_labels(session: str, node: NodeSnapshot) -> list[str]:
    return [session, node.node_id, node.ip, node.ip]


def visible_nodes(snapshot: ClusterSnapshot, now: float, grace_seconds: float) -> Iterator[NodeSnapshot]:
    """Alive nodes, and dead ones for ``grace_seconds`` after they died."""
    for node in snapshot.nodes:
        if node.alive or (node.end_time is not None and now - node.end_time <= grace_seconds):
            yield node


def cluster_families(snapshot: ClusterSnapshot) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "raylens_ray_cluster_info",
        "The Ray cluster being read, value 1.",
        labels=["SessionName", "ray_version", "dashboard_url"],
    )
    info.add_metric([snapshot.session_name, snapshot.ray_version, snapshot.dashboard_url], 1.0)
    yield info


def node_families(snapshot: ClusterSnapshot, now: float, grace_seconds: float) -> Iterator[Metric]:
    """Node counts by kind, then per visible node its identity, lifetime and logical resources."""
    session = snapshot.session_name
    counts = GaugeMetricFamily(
        "raylens_ray_nodes",
        "Nodes in Ray's node table by state, node type and market.",
        labels=["SessionName", "state", "node_type", "market"],
    )
    by_kind = Counter((node.state, node.node_type, node.market) for node in snapshot.nodes)
    for (state, node_type, market), count in sorted(by_kind.items()):
        counts.add_metric([session, state, node_type, market], count)
    yield counts

    info = GaugeMetricFamily(
        "raylens_ray_node_info",
        "Identity of each node, value 1; alive nodes and dead ones within the grace period.",
        labels=[*NODE_LABELS, "node_name", "is_head", "node_type", "market", "instance_type"],
    )
    up = GaugeMetricFamily("raylens_ray_node_up", "1 while the node is ALIVE, 0 once DEAD.", labels=NODE_LABELS)
    started = GaugeMetricFamily(
        "raylens_ray_node_start_time_seconds", "When the node joined, Unix time.", labels=NODE_LABELS
    )
    ended = GaugeMetricFamily("raylens_ray_node_end_time_seconds", "When the node died, Unix time.", labels=NODE_LABELS)
    capacity = GaugeMetricFamily(
        "raylens_ray_node_resource_capacity",
        "Logical resources the node offers (CPU and GPU in units, memory in bytes), by resource.",
        labels=[*NODE_LABELS, "resource"],
    )
    used = GaugeMetricFamily(
        "raylens_ray_node_resource_used",
        "Logical resources held by running tasks and actors now, by resource.",
        labels=[*NODE_LABELS, "resource"],
    )
    for node in visible_nodes(snapshot, now, grace_seconds):
        labels = node_labels(session, node)
        info.add_metric(
            [*labels, node.node_name, str(node.is_head).lower(), node.node_type, node.market, node.instance_type],
            1.0,
        )
        up.add_metric(labels, 1.0 if node.alive else 0.0)
        if node.start_time is not None:
            started.add_metric(labels, node.start_time)
        if node.end_time is not None:
            ended.add_metric(labels, node.end_time)
        if not node.alive:
            continue
        for resource, amount in sorted(node.resources_total.items()):
            capacity.add_metric([*labels, resource], amount)
        for resource, amount in sorted((node.resources_used or {}).items()):
            used.add_metric([*labels, resource], amount)
    yield from (info, up, started, ended, capacity, used)


def object_store_families(snapshot: ClusterSnapshot) -> Iterator[Metric]:
    """Each alive raylet's object store: what it holds now (gauges) and spill/restore since it started."""
    gauges = {
        "used_bytes": ("Bytes of objects in the node's object store.", lambda s: s.used_bytes),
        "capacity_bytes": ("Object store size.", lambda s: s.capacity_bytes),
        "pressure_ratio": ("Used over capacity, 0-1.", lambda s: s.pressure_ratio),
        "primary_copy_bytes": (
            "Bytes of primary copies (pinned until spilled or freed).",
            lambda s: s.primary_copy_bytes,
        ),
        "fallback_bytes": (
            "Bytes allocated on disk because shared memory was full.",
            lambda s: s.fallback_bytes,
        ),
        "objects": ("Objects in the node's object store.", lambda s: s.local_objects),
        "primary_copies": ("Primary copies (pinned) in the node's object store.", lambda s: s.primary_copies),
    }
    counters = {
        "spilled_bytes": ("Bytes spilled to external storage since the raylet started.", "spilled_bytes_total"),
        "spilled_objects": ("Objects spilled since the raylet started.", "spilled_objects_total"),
        "restored_bytes": ("Bytes restored from external storage.", "restored_bytes_total"),
        "restored_objects": ("Objects restored from external storage.", "restored_objects_total"),
    }
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for suffix, (help_text, _) in gauges.items():
        families[suffix] = GaugeMetricFamily(f"raylens_ray_object_store_{suffix}", help_text, labels=NODE_LABELS)
    for suffix, (help_text, _) in counters.items():
        families[suffix] = CounterMetricFamily(f"raylens_ray_object_store_{suffix}", help_text, labels=NODE_LABELS)
    for node in snapshot.alive_nodes:
        stats = node.object_store
        if stats is None:
            continue
        labels = node_labels(snapshot.session_name, node)
        for suffix, (_, read) in gauges.items():
            value = read(stats)
            if value is not None:
                families[suffix].add_metric(labels, float(value))
        for suffix, (_, field_name) in counters.items():
            families[suffix].add_metric(labels, float(getattr(stats, field_name)))
    yield from families.values()
