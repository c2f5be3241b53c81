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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from raylens.collectors.base import Collector, Section
from raylens.config import RayConfig
from raylens.labels import RAY_ENTRYPOINT, RAY_JOB_METADATA, label_value
from raylens.ray.address import RayUnavailable
from raylens.ray.event_log import EventRecorder, event_counter_family
from raylens.ray.lifecycle import LifecycleCounters, label_values
from raylens.ray.refresher import SourceHealth, StateRefresher
from raylens.ray.snapshot import ClusterSnapshot, JobSnapshot, NodeSnapshot

NODE_LABELS = ["SessionName", "node_id", "ip", "NodeAddress"]
JOB_LABELS = ["SessionName", "job_id", "submission_id"]
OTHER = "other"
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
        self._tallies: dict[str, tuple[tuple, Any]] = {}
        # Counted once per new snapshot, on the refresher's side: a scrape only reads the counts.
        source.subscribe("lifecycle", self._lifecycle.observe)
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
            "state": lambda: self._state(snapshot, health),
            "sources": lambda: self._source_failures(health),
            "cluster": data(self._cluster, "version"),
            "nodes": data(self._nodes, "nodes"),
            "object_store": data(self._object_store, "nodes", "object_store"),
            "jobs": data(self._jobs, "jobs"),
            "actors": data(self._actors, "actors"),
            "tasks": data(self._tasks, "tasks"),
            "allocation": data(self._allocation, "jobs", "actors", "tasks"),
            "lifecycle": self._lifecycle_counters,
            "events": self._event_counters,
        }

    # --- sections ------------------------------------------------------------------------------

    def _state(self, snapshot: ClusterSnapshot | None, health: Mapping[str, SourceHealth]) -> Iterator[Metric]:
        now = self._clock()
        nodes = health.get("nodes")
        reached = nodes is not None and nodes.last_attempt is not None and nodes.last_attempt.ok
        yield GaugeMetricFamily(
            "raylens_ray_up",
            "1 when the last read of Ray's node table answered, else 0 (Ray unreachable, or not yet read).",
            value=1.0 if reached else 0.0,
        )
        if snapshot is not None:
            yield GaugeMetricFamily(
                "raylens_ray_state_age_seconds",
                "Age of the newest Ray answer behind this scrape (grows while Ray is unreachable).",
                value=max(0.0, now - snapshot.taken_at),
            )
        families = {
            "fetches": CounterMetricFamily(
                "raylens_ray_state_fetches",
                "Reads of each Ray state source since the exporter started (in the background, never in a scrape).",
                labels=["source"],
            ),
            "errors": CounterMetricFamily(
                "raylens_ray_state_fetch_errors",
                "Reads of each source that failed (timeout, refused, bad or oversized answer).",
                labels=["source"],
            ),
            "success": GaugeMetricFamily(
                "raylens_ray_state_source_success",
                "1 when the source's last read succeeded, else 0.",
                labels=["source"],
            ),
            "duration": GaugeMetricFamily(
                "raylens_ray_state_source_duration_seconds", "Time the source's last read took.", labels=["source"]
            ),
            "age": GaugeMetricFamily(
                "raylens_ray_state_source_age_seconds",
                "Age of the source's answer being served (from when it was asked for).",
                labels=["source"],
            ),
            "interval": GaugeMetricFamily(
                "raylens_ray_state_source_interval_seconds",
                "Configured seconds between reads of the source (before jitter and backoff).",
                labels=["source"],
            ),
            "rows": GaugeMetricFamily(
                "raylens_ray_state_rows", "Rows in the source's answer being served.", labels=["source"]
            ),
            "truncated": GaugeMetricFamily(
                "raylens_ray_state_truncated_rows",
                "Rows Ray had but did not return (limit reached or data missing): counts below are low.",
                labels=["source"],
            ),
        }
        for name, source_health in sorted(health.items()):
            families["fetches"].add_metric([name], source_health.attempts)
            families["errors"].add_metric([name], source_health.errors)
            families["interval"].add_metric([name], source_health.interval_seconds)
            attempt = source_health.last_attempt
            if attempt is not None:
                families["success"].add_metric([name], 1.0 if attempt.ok else 0.0)
                families["duration"].add_metric([name], attempt.seconds)
        if snapshot is not None:
            for name, fetched in sorted(snapshot.fetched_at.items()):
                families["age"].add_metric([name], max(0.0, now - fetched))
            for name, status in sorted(snapshot.sources.items()):
                if name == "object_store" and name not in health:
                    families["success"].add_metric([name], 1.0 if status.ok else 0.0)
                if status.total or status.returned:
                    families["rows"].add_metric([name], status.returned)
                    families["truncated"].add_metric([name], status.truncated)
        yield from families.values()

    @staticmethod
    def _source_failures(health: Mapping[str, SourceHealth]) -> Iterator[Metric]:
        """Fails the collector's health while a source's last read failed (its data may still be
        served, see ray.max_state_age_seconds)."""
        failed = {
            name: h.last_attempt.error
            for name, h in sorted(health.items())
            if h.last_attempt is not None and not h.last_attempt.ok
        }
        if failed:
            raise RayUnavailable("; ".join(f"{name}: {error}" for name, error in failed.items()))
        yield from ()

    def _cluster(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "raylens_ray_cluster_info",
            "The Ray cluster being read, value 1.",
            labels=["SessionName", "ray_version", "dashboard_url"],
        )
        info.add_metric([snapshot.session_name, snapshot.ray_version, snapshot.dashboard_url], 1.0)
        yield info

    def _nodes(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
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
        ended = GaugeMetricFamily(
            "raylens_ray_node_end_time_seconds", "When the node died, Unix time.", labels=NODE_LABELS
        )
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
        for node in self._visible_nodes(snapshot):
            labels = _node_labels(session, node)
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

    def _object_store(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
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
            labels = _node_labels(snapshot.session_name, node)
            for suffix, (_, read) in gauges.items():
                value = read(stats)
                if value is not None:
                    families[suffix].add_metric(labels, float(value))
            for suffix, (_, field_name) in counters.items():
                families[suffix].add_metric(labels, float(getattr(stats, field_name)))
        yield from families.values()

    def _jobs(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        session = snapshot.session_name
        now = self._clock()
        counts = GaugeMetricFamily(
            "raylens_ray_jobs", "Jobs in Ray's job table by status.", labels=["SessionName", "status"]
        )
        for status, count in sorted(Counter(job.status for job in snapshot.jobs).items()):
            counts.add_metric([session, status], count)
        yield counts

        attribution = list(self._config.job_attribution_labels)
        info = GaugeMetricFamily(
            "raylens_ray_job_info",
            "Each live or recently finished job with its metadata, value 1. Join on job_id for attribution.",
            labels=[*JOB_LABELS, "type", "entrypoint", *attribution],
        )
        status = GaugeMetricFamily(
            "raylens_ray_job_status", "1 for the job's current status.", labels=[*JOB_LABELS, "status"]
        )
        started = GaugeMetricFamily(
            "raylens_ray_job_start_time_seconds", "When the job started, Unix time.", labels=JOB_LABELS
        )
        ended = GaugeMetricFamily(
            "raylens_ray_job_end_time_seconds", "When the job finished, Unix time.", labels=JOB_LABELS
        )
        duration = GaugeMetricFamily(
            "raylens_ray_job_duration_seconds",
            "Run time so far, or start to end once finished.",
            labels=JOB_LABELS,
        )
        for job in self._visible_jobs(snapshot, now):
            labels = _job_labels(session, job)
            entrypoint = label_value(job.entrypoint, RAY_ENTRYPOINT, self._config.entrypoint_max_length, digest=False)
            metadata = [label_value(job.metadata.get(key, ""), RAY_JOB_METADATA) for key in attribution]
            info.add_metric([*labels, job.type, entrypoint, *metadata], 1.0)
            status.add_metric([*labels, job.status], 1.0)
            if job.start_time is not None:
                started.add_metric(labels, job.start_time)
                duration.add_metric(labels, job.duration(now) or 0.0)
            if job.end_time is not None:
                ended.add_metric(labels, job.end_time)
        yield from (info, status, started, ended, duration)

    def _actors(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        tally = self._tally(
            "actors",
            snapshot.actors,
            lambda: Counter((actor.class_name, actor.state, actor.job_id) for actor in snapshot.actors),
        )
        yield from self._workload_counts(
            snapshot, tally, kind="actors", name_label="class_name", what="Actors Ray knows (alive and dead)"
        )

    def _tasks(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        tally = self._tally(
            "tasks",
            snapshot.tasks,
            lambda: Counter((task.name or task.func_or_class_name, task.state, task.job_id) for task in snapshot.tasks),
        )
        yield from self._workload_counts(
            snapshot,
            tally,
            kind="tasks",
            name_label="name",
            what="Task attempts in Ray's task history (bounded; see raylens_ray_state_truncated_rows)",
        )

    def _tally(self, purpose: str, rows: tuple, count: Callable[[], Any]) -> Any:
        """``count()`` once per answer: a snapshot reuses the very tuple of an answer that did not
        change, so the 10,000 rows of a task listing are tallied once when they arrive, not on every
        scrape (a scrape only serialises the tallies). Holding ``rows`` keeps the check exact."""
        cached = self._tallies.get(purpose)
        if cached is not None and cached[0] is rows:
            return cached[1]
        result = count()
        self._tallies[purpose] = (rows, result)
        return result

    def _workload_counts(
        self,
        snapshot: ClusterSnapshot,
        tally: Counter[tuple[str, str, str]],
        kind: str,
        name_label: str,
        what: str,
    ) -> Iterator[Metric]:
        session = snapshot.session_name
        names: Counter[str] = Counter()
        for (name, _, _), count in tally.items():
            names[name] += count
        keep = _top_names(names, self._config.top_names)
        by_name = GaugeMetricFamily(
            f"raylens_ray_{kind}",
            f"{what}, by {name_label} (top {self._config.top_names}, the rest as `other`) and state.",
            labels=["SessionName", name_label, "state"],
        )
        folded: Counter[tuple[str, str]] = Counter()
        per_job: Counter[tuple[str, str]] = Counter()
        hidden = self._hidden_job_ids(snapshot)
        for (name, state, job_id), count in tally.items():
            folded[(name if name in keep else OTHER, state)] += count
            if job_id not in hidden:
                per_job[(job_id, state)] += count
        for (name, state), count in sorted(folded.items()):
            by_name.add_metric([session, name, state], count)
        yield by_name

        by_job = GaugeMetricFamily(
            f"raylens_ray_job_{kind}",
            f"{what}, by job and state.",
            labels=["SessionName", "job_id", "state"],
        )
        for (job_id, state), count in sorted(per_job.items()):
            by_job.add_metric([session, job_id, state], count)
        yield by_job

    def _allocation(self, snapshot: ClusterSnapshot) -> Iterator[Metric]:
        """Resources each job holds now: running normal tasks plus alive actors (actor tasks run
        inside their actor's allocation, so they are not added again)."""
        held: dict[tuple[str, str], float] = defaultdict(float)
        for (job_id, resource), amount in self._tally("held", snapshot.tasks, lambda: _held_by_tasks(snapshot)).items():
            held[(job_id, resource)] += amount
        for actor in snapshot.actors:
            if actor.state == "ALIVE":
                for resource, amount in actor.required_resources.items():
                    held[(actor.job_id, resource)] += amount
        family = GaugeMetricFamily(
            "raylens_ray_job_resources_held",
            "Logical resources a job's running tasks and alive actors hold now (CPU/GPU in units, memory in bytes).",
            labels=["SessionName", "job_id", "resource"],
        )
        hidden = self._hidden_job_ids(snapshot)
        for (job_id, resource), amount in sorted(held.items()):
            if job_id not in hidden:
                family.add_metric([snapshot.session_name, job_id, resource], amount)
        yield family

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

    # --- helpers -------------------------------------------------------------------------------

    def _visible_nodes(self, snapshot: ClusterSnapshot) -> Iterator[NodeSnapshot]:
        now = self._clock()
        grace = self._config.finished_grace_seconds
        for node in snapshot.nodes:
            if node.alive or (node.end_time is not None and now - node.end_time <= grace):
                yield node

    def _visible_jobs(self, snapshot: ClusterSnapshot, now: float) -> Iterator[JobSnapshot]:
        grace = self._config.finished_grace_seconds
        for job in snapshot.jobs:
            if not job.finished or job.end_time is None or now - job.end_time <= grace:
                yield job

    def _hidden_job_ids(self, snapshot: ClusterSnapshot) -> set[str]:
        now = self._clock()
        visible = {job.job_id for job in self._visible_jobs(snapshot, now)}
        return {job.job_id for job in snapshot.jobs if job.job_id and job.job_id not in visible}


def _node_labels(session: str, node: NodeSnapshot) -> list[str]:
    return [session, node.node_id, node.ip, node.ip]


def _job_labels(session: str, job: JobSnapshot) -> list[str]:
    return [session, job.job_id or "", job.submission_id or ""]


def _top_names(counts: Counter[str], limit: int) -> set[str]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {name for name, _ in ranked[:limit]}


def _held_by_tasks(snapshot: ClusterSnapshot) -> dict[tuple[str, str], float]:
    held: dict[tuple[str, str], float] = defaultdict(float)
    for task in snapshot.tasks:
        if task.state == "RUNNING" and task.type == "NORMAL_TASK":
            for resource, amount in task.required_resources.items():
                held[(task.job_id, resource)] += amount
    return held
