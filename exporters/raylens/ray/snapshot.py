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

The parsers that build these records from the dashboard's JSON rows (``node_from_api``,
``job_from_api``…) live in ``raylens.ray.from_api`` and can still be imported from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from raylens.labels import RAY_NODE, RAY_SESSION_NAME, label_value

# Ray job statuses (ray.job_submission.JobStatus) and which are final.
JOB_TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
TASK_TERMINAL_STATES = frozenset({"FINISHED", "FAILED"})

# Actor deaths that are the normal end of an actor's life, not failures.
_EXPECTED_ACTOR_DEATH_REASONS = frozenset({"RAY_KILL", "OUT_OF_SCOPE", "REF_DELETED"})
_EXPECTED_WORKER_EXIT_TYPES = frozenset({"INTENDED_USER_EXIT", "INTENDED_SYSTEM_EXIT"})


def frozen_mapping(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy, as every mapping in a snapshot is held."""
    return MappingProxyType(dict(mapping or {}))


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
    labels: Mapping[str, str] = field(default_factory=lambda: frozen_mapping({}))
    resources_total: Mapping[str, float] = field(default_factory=lambda: frozen_mapping({}))
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
    metadata: Mapping[str, str] = field(default_factory=lambda: frozen_mapping({}))
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
    required_resources: Mapping[str, float] = field(default_factory=lambda: frozen_mapping({}))
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
    required_resources: Mapping[str, float] = field(default_factory=lambda: frozen_mapping({}))
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
    sources: Mapping[str, SourceStatus] = field(default_factory=lambda: frozen_mapping({}))
    fetched_at: Mapping[str, float] = field(default_factory=lambda: frozen_mapping({}))
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


# The parsers moved to raylens.ray.from_api and are still importable from here, where callers and
# tests have always found them. Resolved on first use: from_api builds the records defined above, so
# importing it at the top would be circular.
_FROM_API = frozenset(
    {
        "ENTRYPOINT_KEPT_MAX",
        "actor_death",
        "actor_from_api",
        "clean_resources",
        "first_label",
        "job_from_api",
        "node_death_reason",
        "node_from_api",
        "normalise_market",
        "object_store_from_dashboard",
        "serve_from_api",
        "task_from_api",
    }
)


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        from raylens.ray import from_api

        return getattr(from_api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
