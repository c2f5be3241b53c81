"""What the cost engine reads: a small typed picture of the cluster at one instant.

The engine never talks to Ray. An adapter (``raylens.cost.ray_source``) turns Ray's state into an
``Observation``; tests build observations from a scripted timeline. Times are Unix seconds (floats);
memory is bytes; CPUs and GPUs are Ray's logical units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

EMPTY_LABELS: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class Resources:
    """Amounts of the three priced resources."""

    cpu: float = 0.0
    gpu: float = 0.0
    memory_bytes: float = 0.0

    @classmethod
    def from_ray(cls, resources: Mapping[str, float] | None) -> Resources:
        """From Ray's resource dict (``{"CPU": 4, "GPU": 1, "memory": 8e9, ...}``)."""
        resources = resources or {}
        return cls(
            float(resources.get("CPU", 0.0) or 0.0),
            float(resources.get("GPU", 0.0) or 0.0),
            float(resources.get("memory", 0.0) or 0.0),
        )


@dataclass(frozen=True, slots=True)
class NodeSpan:
    """One Ray node and its lifetime. ``end_time`` is None while the node is alive.

    ``capacity`` is Ray's ``resources_total`` (logical CPU, GPU, ``memory``). ``physical_memory_bytes``
    is the machine's RAM when known (Ray's ``memory`` plus ``object_store_memory`` otherwise); it only
    matters for nodes priced by resources. ``ray_resources`` is Ray's full resource map (custom names
    included), for pricing rules. ``instance_type``/``market`` are what the source already knows (Ray
    labels, the autoscaler); pricing rules in the config still come first.
    """

    node_id: str
    start_time: float
    end_time: float | None = None
    capacity: Resources = Resources()
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = ""
    is_head: bool = False
    ray_resources: Mapping[str, float] = field(default_factory=dict)
    instance_type: str = ""
    market: str = ""
    physical_memory_bytes: float | None = None
    accelerator_type: str = ""
    spilled_bytes: float = 0.0
    egress_bytes_total: float | None = None

    def alive_at(self, time: float) -> bool:
        return self.start_time <= time and (self.end_time is None or time < self.end_time)


@dataclass(frozen=True, slots=True)
class Allocation:
    """Resources one task, actor or placement-group bundle of a job holds on a node.

    ``used`` is measured usage when a source knows it; the engine charges max(held, used) per resource.
    ``start_time``/``end_time`` are given when Ray knows them (tasks do); when not, the engine assumes
    the midpoint between the two scrapes that first (or last) saw the allocation.
    ``name`` is the task's function or the actor's class name (``ServeReplica:app:deployment``), used to
    infer the workload type and the Serve application.
    """

    allocation_id: str
    job_id: str
    node_id: str
    held: Resources
    used: Resources | None = None
    start_time: float | None = None
    end_time: float | None = None
    kind: str = "task"
    name: str = ""


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A Ray job: its id (hex, e.g. ``05000000``), submission id, metadata and times."""

    job_id: str
    submission_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    start_time: float | None = None
    end_time: float | None = None
    entrypoint: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """The cluster as seen at ``time``: every node Ray still lists (dead ones with an end time),
    the jobs, and the allocations alive now (ended ones may be included with their end time)."""

    time: float
    nodes: Sequence[NodeSpan] = ()
    jobs: Sequence[JobInfo] = ()
    allocations: Sequence[Allocation] = ()
