"""What Ray's own metrics lack, read from the State, Job and node APIs: per-job data with metadata,
node lifecycle, object-store counters, readable task and actor counts.

Everything comes from the newest ``ClusterSnapshot`` a background refresher holds
(``raylens.ray.refresher``): a scrape never calls Ray, it only serialises what was read. Every
series carries ``SessionName``; per-node series carry ``ip`` and ``NodeAddress`` (same value) so
they join with Ray's hardware (``ip``) and core (``NodeAddress``) series. Sample::

    raylens_ray_up 1.0
    raylens_ray_state_age_seconds 1.2
    raylens_ray_node_up{NodeAddress="10.0.0.5",SessionName="session_…",ip="10.0.0.5",node_id="ab12…"} 1.0
    raylens_ray_object_store_pressure_ratio{NodeAddress="10.0.0.5",…} 0.42
    raylens_ray_object_store_spilled_bytes_total{NodeAddress="10.0.0.5",…} 2.1e+08
    raylens_ray_job_info{SessionName="session_…",entrypoint="python train.py",job_id="02000000",
        project="vision",submission_id="raysubmit_x",team="ml",type="SUBMISSION",user="alice",workload=""} 1.0
    raylens_ray_jobs_finished_total{SessionName="session_…",status="FAILED"} 3.0
    raylens_ray_tasks{SessionName="session_…",name="preprocess",state="RUNNING"} 12.0
    raylens_ray_node_removals_total{SessionName="session_…",market="spot",node_type="gpu",reason="preempted"} 1

Ray itself is imported only to turn ``ray.address: auto`` or a GCS address into the dashboard URL
(``raylens.ray.address``); with a dashboard URL this collector needs no Ray install.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, Metric

from raylens.collectors.base import Collector, Section
from raylens.config import RayConfig
from raylens.ray.event_log import EventRecorder, event_counter_family
from raylens.ray.job_metrics import JOB_LABELS, hidden_job_ids, job_families
from raylens.ray.lifecycle import LifecycleCounters, label_values
from raylens.ray.node_metrics import NODE_LABELS, cluster_families, node_families, object_store_families
from raylens.ray.refresher import SourceHealth, StateRefresher
from raylens.ray.snapshot import ClusterSnapshot
from raylens.ray.source_metrics import raise_for_failed_sources, state_families
from raylens.ray.workload_metrics import (
    OTHER,
    AnswerTallies,
    actor_tally,
    allocation_families,
    held_by_tasks,
    task_tally,
    workload_count_families,
)

# This module stays the public import path of the ray collector; the families are built by the
# raylens.ray.*_metrics modules.
__all__ = ["JOB_LABELS", "NODE_LABELS", "OTHER", "RayCollector", "SnapshotProvider"]

# (LifecycleCounters attribute, metric name, labels, help)
_LIFECYCLE_COUNTERS: list[tuple[str, str, list[str], str]] = [
    (
        "jobs_finished",
        "raylens_ray_jobs_finished",
        ["SessionName", "status"],
        "Jobs that reached a final status (SUCCEEDED, FAILED, STOPPED) while the exporter watched.",
    ),
    (
        "node_joins",
        "raylens_ray_node_joins",
        ["SessionName", "node_type", "market"],
        "Nodes that joined the cluster.",
    ),
    (
        "node_removals",
        "raylens_ray_node_removals",
        ["SessionName", "node_type", "market", "reason"],
        "Nodes that left, by reason: expected_termination, unexpected_termination, preempted, "
        "idle_terminated, unspecified, vanished.",
    ),
    (
        "task_failures",
        "raylens_ray_task_failures",
        ["SessionName", "error_type"],
        "Failed task attempts by Ray's error type.",
    ),
    (
        "actor_failures",
        "raylens_ray_actor_failures",
        ["SessionName", "error_type"],
        "Actors that died other than by ray.kill, going out of scope or an intended exit, by reason.",
    ),
]


class SnapshotProvider(Protocol):
    """What the collector reads: ``raylens.ray.refresher.StateRefresher`` (tests hand in stubs)."""

    def current(self) -> ClusterSnapshot | None: ...

    def health(self) -> Mapping[str, SourceHealth]: ...

    def subscribe(self, name: str, handle: Callable[[ClusterSnapshot], None]) -> object: ...


class RayCollector(Collector):
    name = "ray"

    def __init__(
        self,
        config: RayConfig,
        source: SnapshotProvider | None = None,
        clock: Callable[[], float] = time.time,
        events: EventRecorder | None = None,
    ):
        self._config = config
        if source is None:
            refresher = StateRefresher(config)
            refresher.start()
            source = refresher
        self._source = source
        self._clock = clock
        self._lifecycle = LifecycleCounters()
        self._tallies = AnswerTallies()
        # Counted once per new snapshot, on the refresher's side: a scrape only reads the counts.
        source.subscribe("lifecycle", self._lifecycle.observe)
        # Tallies of a new answer too (10,000 task rows took a scrape 10 to 30 ms when it counted them).
        source.subscribe("tallies", self._count_answers)
        # Workspace events (raylens.ray.event_log): derived, written and counted the same way.
        self._events = events
        if events is not None:
            source.subscribe("events", events.observe)

    @property
    def source(self) -> SnapshotProvider:
        return self._source

    def sections(self) -> Mapping[str, Section]:
        # One snapshot per scrape, read without waiting: every section sees the same cluster.
        snapshot = self._source.current()
        health = self._source.health()

        def data(builder: Callable[[ClusterSnapshot], Iterator[Metric]], *sources: str) -> Section:
            """A section fed by ``sources``: empty until each of them has answered at least once (a
            failing source keeps its last answer up to ray.max_state_age_seconds)."""

            def section() -> Iterator[Metric]:
                if snapshot is not None and all(snapshot.has(source) for source in sources):
                    yield from builder(snapshot)

            return section

        return {
            "state": lambda: state_families(snapshot, health, self._clock()),
            "sources": lambda: raise_for_failed_sources(health),
            "cluster": data(cluster_families, "version"),
            "nodes": data(self._nodes, "nodes"),
            "object_store": data(object_store_families, "nodes", "object_store"),
            "jobs": data(self._jobs, "jobs"),
            "actors": data(self._actors, "actors"),
            "tasks": data(self._tasks, "tasks"),
            "allocation": data(self._allocation, "jobs", "actors", "tasks"),
            "lifecycle": self._lifecycle_counters,
            "events": self._event_counters,
        }

    # --- sections: what the collector holds (config, clock, tallies) passed to the family builders

    def _nodes(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        return node_families(snapshot, self._clock(), self._config.finished_grace_seconds)

    def _jobs(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        return job_families(
            snapshot,
            self._clock(),
            self._config.finished_grace_seconds,
            self._config.job_attribution_labels,
            self._config.entrypoint_max_length,
        )

    def _count_answers(self, snapshot: ClusterSnapshot) -> None:
        """What the sections below would count at the first scrape of a new answer, counted ahead."""
        self._tallies.get("actors", snapshot.actors, lambda: actor_tally(snapshot))
        self._tallies.get("tasks", snapshot.tasks, lambda: task_tally(snapshot))
        self._tallies.get("held", snapshot.tasks, lambda: held_by_tasks(snapshot))

    def _actors(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        return workload_count_families(
            snapshot.session_name,
            self._tallies.get("actors", snapshot.actors, lambda: actor_tally(snapshot)),
            self._hidden_job_ids(snapshot),
            kind="actors",
            name_label="class_name",
            what="Actors Ray knows (alive and dead)",
            top_name_limit=self._config.top_names,
        )

    def _tasks(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        return workload_count_families(
            snapshot.session_name,
            self._tallies.get("tasks", snapshot.tasks, lambda: task_tally(snapshot)),
            self._hidden_job_ids(snapshot),
            kind="tasks",
            name_label="name",
            what="Task attempts in Ray's task history (bounded; see raylens_ray_state_truncated_rows)",
            top_name_limit=self._config.top_names,
        )

    def _allocation(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        return allocation_families(
            snapshot,
            self._tallies.get("held", snapshot.tasks, lambda: held_by_tasks(snapshot)),
            self._hidden_job_ids(snapshot),
        )

    def _lifecycle_counters(self) -> Iterator[Metric]:
        counts = self._lifecycle.snapshot()
        for key, name, labels, help_text in _LIFECYCLE_COUNTERS:
            family = CounterMetricFamily(name, help_text, labels=labels)
            for values, count in label_values(counts[key]):
                family.add_metric(values, count)
            yield family

    def _event_counters(self) -> Iterator[Metric]:
        if self._events is not None:
            yield event_counter_family(self._events.counts())

    def _hidden_job_ids(self, snapshot: ClusterSnapshot) -> set[str]:
        return hidden_job_ids(snapshot, self._clock(), self._config.finished_grace_seconds)
