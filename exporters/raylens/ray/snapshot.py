"""An immutable picture of a Ray cluster, assembled from the newest answer of each source.

This is the contract between Ray access (``raylens.ray.state``) and everything that reads Ray data:
the ``ray`` collector, service discovery and the cost engine. It holds plain values only — no
clients, no Ray objects — so tests build snapshots by hand and consumers never reach back into Ray.

Conventions:

* Times are **seconds since the Unix epoch** (``float``), converted from Ray's milliseconds; ``None``
  when Ray does not know them (a job still running has ``end_time=None``).
* Ids are Ray's hex strings (``job_id="02000000"`` equals the ``JobId`` label on Ray's series;
  ``node_id`` equals ``ray.io/node-id``); ``None``/``""`` when Ray gives none.
* Resource maps use Ray's resource names (``CPU``, ``GPU``, ``memory`` and ``object_store_memory``
  in bytes, custom names as declared). Ray's implicit ``node:<ip>`` and ``node:__internal_head__``
  markers are dropped.
* Mappings are read-only (``types.MappingProxyType``); sequences are tuples.
* A source that never answered leaves its tuple empty; ``ClusterSnapshot.sources`` says how each
  source's last attempt fared. Check ``snapshot.has("tasks")`` before treating an empty tuple as
  "no tasks".
* Text that can become a label value (names, ids, metadata, node labels, the session name) is user
  text: it is held here already under the label-value policy (``raylens.labels``), so no consumer
  exports a 10 kB value or a lone surrogate.

The parsers (``*_from_api``) take the JSON rows of the dashboard's HTTP APIs exactly as Ray 2.60
returns them (``/api/v0/nodes?detail=1``, ``/api/jobs/``, ``/api/v0/actors?detail=1``,
``/api/v0/tasks?detail=1``, ``/nodes?view=summary``) and tolerate missing fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from raylens.labels import (
    RAY_ACTOR_CLASS,
    RAY_ENTRYPOINT,
    RAY_JOB_ID,
    RAY_JOB_METADATA,
    RAY_NODE,
    RAY_SESSION_NAME,
    RAY_TASK_NAME,
    label_value,
)

# Ray job statuses (ray.job_submission.JobStatus) and which are final.
JOB_TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
TASK_TERMINAL_STATES = frozenset({"FINISHED", "FAILED"})

# Node death reasons (gcs.proto NodeDeathInfo.Reason), recovered from the state API's
# ``state_message`` (ray.dashboard.utils.compose_state_message writes these prefixes).
_NODE_DEATH_PREFIXES = (
    ("Expected termination", "EXPECTED_TERMINATION"),
    ("Unexpected termination", "UNEXPECTED_TERMINATION"),
    ("Terminated due to preemption", "AUTOSCALER_DRAIN_PREEMPTED"),
    ("Terminated due to idle", "AUTOSCALER_DRAIN_IDLE"),
)
# Actor deaths that are the normal end of an actor's life, not failures.
_EXPECTED_ACTOR_DEATH_REASONS = frozenset({"RAY_KILL", "OUT_OF_SCOPE", "REF_DELETED"})
_EXPECTED_WORKER_EXIT_TYPES = frozenset({"INTENDED_USER_EXIT", "INTENDED_SYSTEM_EXIT"})
_WORKER_EXIT_TYPE = re.compile(r"[Ww]orker exit type: ([A-Z_]+)")
# ActorDeathCause's other contexts (common.proto), named the way Ray names the matching ErrorType.
_ACTOR_DEATH_CONTEXTS = {
    "creation_task_failure_context": "ACTOR_CREATION_FAILED",
    "runtime_env_failed_context": "RUNTIME_ENV_SETUP_FAILED",
    "actor_unschedulable_context": "ACTOR_UNSCHEDULABLE_ERROR",
    "oom_context": "OUT_OF_MEMORY",
}


# Entrypoints are command lines; enough is kept for any sensible ray.entrypoint_max_length.
ENTRYPOINT_KEPT_MAX = 4096


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


def _seconds(milliseconds: Any) -> float | None:
    """Ray's epoch milliseconds (number or string; 0 means unknown) as epoch seconds."""
    try:
        value = float(milliseconds)
    except (TypeError, ValueError):
        return None
    return value / 1000.0 if value > 0 else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def clean_resources(resources: Mapping[str, Any] | None) -> Mapping[str, float]:
    """Ray resource map without the implicit per-node markers, values as floats."""
    cleaned = {}
    for name, amount in (resources or {}).items():
        if name.startswith("node:"):
            continue
        try:
            cleaned[name] = float(amount)
        except (TypeError, ValueError):
            continue
    return _frozen(cleaned)


@dataclass(frozen=True)
class ObjectStoreStats:
    """One raylet's object store (``GetNodeStats().store_stats``, as the dashboard polls it).

    Byte and object counts are what the store holds now; ``*_total`` fields are cumulative since the
    raylet started (they reset only with a new node id).
    """

    used_bytes: float
    capacity_bytes: float
    primary_copy_bytes: float
    fallback_bytes: float
    local_objects: int
    primary_copies: int
    pulls_queued: int
    spilled_bytes_total: float
    spilled_objects_total: float
    spill_seconds_total: float
    restored_bytes_total: float
    restored_objects_total: float
    restore_seconds_total: float

    @property
    def pressure_ratio(self) -> float | None:
        """Used over capacity, 0-1 (above 1 only while objects sit in fallback storage)."""
        return self.used_bytes / self.capacity_bytes if self.capacity_bytes > 0 else None


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    node_id: str
    ip: str
    """The node's advertised address: Ray's ``NodeAddress`` and ``ip`` label values."""
    is_head: bool
    state: str
    """``ALIVE`` or ``DEAD``."""
    node_name: str = ""
    node_type: str = ""
    """Node group / autoscaler node type, from the configured labels; ``head``/``worker`` otherwise."""
    market: str = ""
    """``spot``, ``on_demand``, or ``""`` when neither labels nor config say."""
    instance_type: str = ""
    """Cloud instance type when the autoscaler reports it (``instanceTypeName``), else ``""``."""
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    resources_total: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    resources_used: Mapping[str, float] | None = None
    """Logical allocation now (what running tasks and actors hold); ``None`` when unknown."""
    start_time: float | None = None
    end_time: float | None = None
    death_reason: str = ""
    """For dead nodes: ``EXPECTED_TERMINATION``, ``UNEXPECTED_TERMINATION``,
    ``AUTOSCALER_DRAIN_PREEMPTED``, ``AUTOSCALER_DRAIN_IDLE`` or ``UNSPECIFIED``."""
    state_message: str = ""
    metrics_export_port: int | None = None
    """Port of Ray's own ``/metrics`` on this node (``--metrics-export-port``)."""
    node_manager_port: int | None = None
    object_store: ObjectStoreStats | None = None
    """``None`` for dead nodes and when the dashboard had no stats for the raylet."""

    def __post_init__(self) -> None:
        # Set from other sources than the node row (autoscaler types, labels); see the module docstring.
        for name in ("node_type", "instance_type"):
            object.__setattr__(self, name, label_value(getattr(self, name), RAY_NODE))

    @property
    def alive(self) -> bool:
        return self.state == "ALIVE"


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    job_id: str | None
    """Hex job id (Ray's ``JobId``); ``None`` for a submission whose driver never started."""
    submission_id: str | None
    """Job API id (user-chosen or ``raysubmit_…``); ``None`` for jobs started by ``ray.init``."""
    type: str
    """``SUBMISSION`` or ``DRIVER``."""
    status: str
    """``PENDING``, ``RUNNING``, ``STOPPED``, ``SUCCEEDED`` or ``FAILED``."""
    entrypoint: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    """Free-form ``metadata`` given at submission: ``user``, ``project``, ``team``…"""
    start_time: float | None = None
    end_time: float | None = None
    error_type: str = ""
    driver_node_id: str = ""
    driver_exit_code: int | None = None

    @property
    def key(self) -> str:
        """A stable identity: the submission id when there is one, else the job id."""
        return self.submission_id or self.job_id or ""

    @property
    def finished(self) -> bool:
        return self.status in JOB_TERMINAL_STATUSES

    def duration(self, now: float) -> float | None:
        """Seconds from start to end, or to ``now`` while the job runs."""
        if self.start_time is None:
            return None
        end = self.end_time if self.end_time is not None else now
        return max(0.0, end - self.start_time)


@dataclass(frozen=True, slots=True)
class ActorSnapshot:
    actor_id: str
    class_name: str
    """Serve replicas read ``ServeReplica:<app>:<deployment>``."""
    state: str
    """``DEPENDENCIES_UNREADY``, ``PENDING_CREATION``, ``ALIVE``, ``RESTARTING`` or ``DEAD``."""
    job_id: str
    node_id: str = ""
    pid: int | None = None
    name: str = ""
    ray_namespace: str = ""
    is_detached: bool = False
    required_resources: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    """What the actor holds for its lifetime (often empty: actors default to 0 CPU once placed)."""
    placement_group_id: str = ""
    num_restarts: int = 0
    death_reason: str = ""
    """For dead actors: ``ActorDiedErrorContext.reason`` (``WORKER_DIED``, ``OWNER_DIED``,
    ``NODE_DIED``, ``RAY_KILL``, ``OUT_OF_SCOPE``…) or the failure context as an ErrorType name
    (``ACTOR_CREATION_FAILED``, ``RUNTIME_ENV_SETUP_FAILED``, ``OUT_OF_MEMORY``…)."""
    death_exit_type: str = ""
    """The worker exit type Ray puts in the death message (``INTENDED_USER_EXIT``, ``SYSTEM_ERROR``,
    ``USER_ERROR``…), ``""`` when absent."""

    @property
    def failed(self) -> bool:
        """Dead for a reason other than a normal end (``ray.kill``, out of scope, intended exit)."""
        if self.state != "DEAD":
            return False
        if self.death_reason in _EXPECTED_ACTOR_DEATH_REASONS:
            return False
        return self.death_exit_type not in _EXPECTED_WORKER_EXIT_TYPES


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """One attempt of a task, as the GCS task-event store holds it (bounded history)."""

    task_id: str
    attempt_number: int
    name: str
    func_or_class_name: str
    state: str
    """``PENDING_ARGS_AVAIL``, ``PENDING_NODE_ASSIGNMENT``, ``SUBMITTED_TO_WORKER``, ``RUNNING``,
    ``FINISHED``, ``FAILED``…"""
    job_id: str
    type: str
    """``NORMAL_TASK``, ``ACTOR_CREATION_TASK``, ``ACTOR_TASK`` or ``DRIVER_TASK``."""
    actor_id: str = ""
    node_id: str = ""
    worker_pid: int | None = None
    required_resources: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    start_time: float | None = None
    end_time: float | None = None
    error_type: str = ""
    placement_group_id: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.attempt_number)


@dataclass(frozen=True, slots=True)
class ServeApplication:
    name: str
    route_prefix: str
    """``""`` for an application without an HTTP route."""
    status: str
    """``NOT_STARTED``, ``DEPLOYING``, ``RUNNING``, ``DEPLOY_FAILED``, ``DELETING``, ``UNHEALTHY``."""


@dataclass(frozen=True, slots=True)
class ServeState:
    """Serve's HTTP ingress and applications, from ``/api/serve/applications/``."""

    http_host: str = ""
    """The proxies' bind address (``0.0.0.0`` when reachable on every node address)."""
    http_port: int | None = None
    proxy_ips: tuple[str, ...] = ()
    """Addresses of the nodes running a healthy proxy."""
    applications: tuple[ServeApplication, ...] = ()


@dataclass(frozen=True)
class SourceStatus:
    """How one source fared in its last attempt."""

    ok: bool
    error: str = ""
    seconds: float = 0.0
    returned: int = 0
    total: int = 0
    """Rows Ray had; ``total > returned`` means the answer was truncated (limit or missing data)."""
    warning: str = ""
    """Ray's ``partial_failure_warning``: some raylets or workers did not answer."""

    @property
    def truncated(self) -> int:
        return max(0, self.total - self.returned)


@dataclass(frozen=True)
class ClusterSnapshot:
    """Everything raylens knows about the cluster: each source's newest good answer.

    ``sources`` maps each source (``version``, ``nodes``, ``node_details``, ``resource_usage``,
    ``jobs``, ``actors``, ``tasks``, ``object_store``) to how its *last attempt* fared;
    ``fetched_at`` maps each source that ever answered to when the answer in use was asked for.
    Sources are fetched on their own schedules (``raylens.ray.refresher``), so a snapshot mixes
    answers of different ages: ``as_of`` gives the time a set of sources is known up to.
    """

    taken_at: float
    """Exporter clock (epoch seconds) of the newest answer in this snapshot."""
    duration_seconds: float
    dashboard_url: str
    session_name: str
    ray_version: str
    nodes: tuple[NodeSnapshot, ...] = ()
    jobs: tuple[JobSnapshot, ...] = ()
    actors: tuple[ActorSnapshot, ...] = ()
    tasks: tuple[TaskSnapshot, ...] = ()
    sources: Mapping[str, SourceStatus] = field(default_factory=lambda: _frozen({}))
    fetched_at: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    generation: int = 0
    """Increases with every snapshot a refresher publishes (two snapshots can share ``taken_at``)."""
    serve: ServeState | None = None
    """``None`` until the ``serve`` source answered (or when ``ray.serve_routes`` is off)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "session_name", label_value(self.session_name, RAY_SESSION_NAME))

    def ok(self, source: str) -> bool:
        status = self.sources.get(source)
        return status is not None and status.ok

    def has(self, source: str) -> bool:
        """Whether the snapshot holds an answer of ``source`` (maybe older than a failed attempt)."""
        return source in self.fetched_at or (not self.fetched_at and self.ok(source))

    def as_of(self, sources: Iterable[str]) -> float | None:
        """The time every one of ``sources`` is known up to (the oldest of their answers), or
        ``None`` while one of them has never answered."""
        times = []
        for source in sources:
            if source in self.fetched_at:
                times.append(self.fetched_at[source])
            elif not self.fetched_at and self.ok(source):
                times.append(self.taken_at)  # a snapshot built in one round
            else:
                return None
        return min(times) if times else None

    def node(self, node_id: str) -> NodeSnapshot | None:
        return next((node for node in self.nodes if node.node_id == node_id), None)

    def job(self, job_id: str) -> JobSnapshot | None:
        return next((job for job in self.jobs if job.job_id == job_id), None)

    @property
    def alive_nodes(self) -> tuple[NodeSnapshot, ...]:
        return tuple(node for node in self.nodes if node.alive)


# --- parsers: dashboard JSON rows → snapshot records -------------------------------------------


def node_death_reason(state: str, state_message: str | None) -> str:
    if state != "DEAD":
        return ""
    for prefix, reason in _NODE_DEATH_PREFIXES:
        if (state_message or "").startswith(prefix):
            return reason
    return "UNSPECIFIED"


def node_from_api(row: Mapping[str, Any], **extra: Any) -> NodeSnapshot:
    """A row of ``/api/v0/nodes?detail=1``; ``extra`` sets fields from other sources."""
    state = str(row.get("state") or "")
    message = row.get("state_message") or ""
    values: dict[str, Any] = {
        "node_id": str(row.get("node_id") or ""),
        "ip": str(row.get("node_ip") or ""),
        "is_head": bool(row.get("is_head_node")),
        "state": state,
        "node_name": label_value(row.get("node_name") or "", RAY_NODE),
        "labels": _frozen(
            {label_value(k, RAY_NODE): label_value(v, RAY_NODE) for k, v in (row.get("labels") or {}).items()}
        ),
        "resources_total": clean_resources(row.get("resources_total")),
        "start_time": _seconds(row.get("start_time_ms")),
        "end_time": _seconds(row.get("end_time_ms")),
        "death_reason": node_death_reason(state, message),
        "state_message": str(message),
    }
    values.update(extra)
    return NodeSnapshot(**values)


def object_store_from_dashboard(stats: Mapping[str, Any]) -> ObjectStoreStats:
    """A raylet's ``storeStats`` as the dashboard's node summary gives it (protobuf JSON: camelCase
    names, 64-bit integers as strings, zero values left out)."""

    def number(key: str) -> float:
        try:
            return float(stats.get(key) or 0)
        except (TypeError, ValueError):
            return 0.0

    return ObjectStoreStats(
        used_bytes=number("objectStoreBytesUsed"),
        # Ray names the capacity "avail" (object_manager.cc); the dashboard reads it the same way.
        capacity_bytes=number("objectStoreBytesAvail"),
        primary_copy_bytes=number("objectStoreBytesPrimaryCopy"),
        fallback_bytes=number("objectStoreBytesFallback"),
        local_objects=int(number("numLocalObjects")),
        primary_copies=int(number("numObjectStorePrimaryCopies")),
        pulls_queued=int(number("objectPullsQueued")),
        spilled_bytes_total=number("spilledBytesTotal"),
        spilled_objects_total=number("spilledObjectsTotal"),
        spill_seconds_total=number("spillTimeTotalS"),
        restored_bytes_total=number("restoredBytesTotal"),
        restored_objects_total=number("restoredObjectsTotal"),
        restore_seconds_total=number("restoreTimeTotalS"),
    )


def job_from_api(row: Mapping[str, Any]) -> JobSnapshot:
    """An element of ``GET /api/jobs/`` (``JobDetails``)."""
    metadata = {
        label_value(k, RAY_JOB_METADATA): label_value(v, RAY_JOB_METADATA)
        for k, v in (row.get("metadata") or {}).items()
    }
    job_id, submission_id = row.get("job_id"), row.get("submission_id")
    return JobSnapshot(
        job_id=label_value(job_id, RAY_JOB_ID) if job_id else None,
        submission_id=label_value(submission_id, RAY_JOB_ID) if submission_id else None,
        type=str(row.get("type") or ""),
        status=str(row.get("status") or ""),
        # Kept longer here: the ray collector cuts it to ray.entrypoint_max_length under the same policy.
        entrypoint=label_value(row.get("entrypoint") or "", RAY_ENTRYPOINT, ENTRYPOINT_KEPT_MAX, digest=False),
        metadata=_frozen(metadata),
        start_time=_seconds(row.get("start_time")),
        end_time=_seconds(row.get("end_time")),
        error_type=str(row.get("error_type") or ""),
        driver_node_id=str(row.get("driver_node_id") or ""),
        driver_exit_code=_int_or_none(row.get("driver_exit_code")),
    )


def actor_death(death_cause: Mapping[str, Any] | None) -> tuple[str, str]:
    """(reason, worker exit type) from an actor's ``death_cause``."""
    if not death_cause:
        return "", ""
    context = death_cause.get("actor_died_error_context")
    if isinstance(context, Mapping):
        match = _WORKER_EXIT_TYPE.search(str(context.get("error_message") or ""))
        return str(context.get("reason") or "UNSPECIFIED"), match.group(1) if match else ""
    for key, reason in _ACTOR_DEATH_CONTEXTS.items():
        if key in death_cause:
            return reason, ""
    return "UNSPECIFIED", ""


def actor_from_api(row: Mapping[str, Any]) -> ActorSnapshot:
    """A row of ``/api/v0/actors?detail=1``."""
    reason, exit_type = actor_death(row.get("death_cause"))
    return ActorSnapshot(
        actor_id=str(row.get("actor_id") or ""),
        class_name=label_value(row.get("class_name") or "", RAY_ACTOR_CLASS),
        state=str(row.get("state") or ""),
        job_id=str(row.get("job_id") or ""),
        node_id=str(row.get("node_id") or ""),
        pid=_int_or_none(row.get("pid")) or None,
        name=str(row.get("name") or ""),
        ray_namespace=str(row.get("ray_namespace") or ""),
        is_detached=bool(row.get("is_detached")),
        required_resources=clean_resources(row.get("required_resources")),
        placement_group_id=str(row.get("placement_group_id") or ""),
        num_restarts=_int_or_none(row.get("num_restarts")) or 0,
        death_reason=reason,
        death_exit_type=exit_type,
    )


def task_from_api(row: Mapping[str, Any]) -> TaskSnapshot:
    """A row of ``/api/v0/tasks?detail=1``."""
    return TaskSnapshot(
        task_id=str(row.get("task_id") or ""),
        attempt_number=_int_or_none(row.get("attempt_number")) or 0,
        name=label_value(row.get("name") or "", RAY_TASK_NAME),
        func_or_class_name=label_value(row.get("func_or_class_name") or row.get("name") or "", RAY_TASK_NAME),
        state=str(row.get("state") or ""),
        job_id=str(row.get("job_id") or ""),
        type=str(row.get("type") or ""),
        actor_id=str(row.get("actor_id") or ""),
        node_id=str(row.get("node_id") or ""),
        worker_pid=_int_or_none(row.get("worker_pid")),
        required_resources=clean_resources(row.get("required_resources")),
        start_time=_seconds(row.get("start_time_ms")),
        end_time=_seconds(row.get("end_time_ms")),
        error_type=str(row.get("error_type") or ""),
        placement_group_id=str(row.get("placement_group_id") or ""),
    )


def serve_from_api(body: Mapping[str, Any]) -> ServeState:
    """``GET /api/serve/applications/`` (Ray 2.60): empty maps when Serve is not running."""
    http = body.get("http_options") or {}
    proxies = body.get("proxies") or {}
    applications = body.get("applications") or {}
    return ServeState(
        http_host=str(http.get("host") or ""),
        http_port=_int_or_none(http.get("port")),
        proxy_ips=tuple(
            sorted(
                {
                    str(proxy.get("node_ip"))
                    for proxy in proxies.values()
                    if proxy.get("node_ip") and proxy.get("status", "HEALTHY") == "HEALTHY"
                }
            )
        ),
        applications=tuple(
            ServeApplication(str(name), str(app.get("route_prefix") or ""), str(app.get("status") or ""))
            for name, app in sorted(applications.items())
        ),
    )


def normalise_market(value: str | None) -> str:
    """``spot``/``on_demand`` from the spellings clouds and KubeRay use; ``""`` when unknown."""
    text = (value or "").strip().lower().replace("-", "_").replace(" ", "_")
    if text in {"spot", "preemptible", "preemptable", "low_priority", "lowpriority"}:
        return "spot"
    if text in {"on_demand", "ondemand", "regular", "standard", "reserved", "dedicated"}:
        return "on_demand"
    return ""


def first_label(labels: Mapping[str, str], keys: Iterable[str]) -> str:
    for key in keys:
        value = labels.get(key)
        if value:
            return value
    return ""
