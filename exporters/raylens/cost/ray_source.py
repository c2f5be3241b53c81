"""Ray's ``ClusterSnapshot`` (``raylens.ray.snapshot``) as the cost engine's ``Observation``.

What becomes an allocation:

* an ALIVE actor with a node: its ``required_resources`` for its lifetime (Ray gives no actor start
  time, so the engine's midpoint rule applies); ``ServeReplica:<app>:<deployment>`` actors carry
  their Serve application;
* a NORMAL_TASK attempt with a node that holds its lease (``SUBMITTED_TO_WORKER``, which Ray shows
  until the worker's RUNNING event arrives, ``RUNNING``, or blocked in ``ray.get``/``ray.wait``), or
  FINISHED/FAILED with start and end times (charged exactly for the part not yet accounted);
* actor tasks hold nothing of their own (the actor does), and neither does the driver.

Placement-group resources (``CPU_group_<pg>``, ``CPU_group_<i>_<pg>``) count as the plain resource.

Time: the sources are read on their own schedules, so the observation is taken **as of the oldest
answer among nodes, jobs, actors and tasks** (``ClusterSnapshot.as_of``), never at scrape or arrival
time. Spend is then integrated up to that instant from Ray's own node and task timestamps. A late
answer (a slow or failing source) only holds accounting back: the next observation covers the whole
gap, node lifetimes exactly, allocations that changed in the gap by the engine's midpoint rule and
finished tasks by their own start and end times. A source that has never answered, or whose answer
is older than ``ray.max_state_age_seconds``, raises ``IncompleteSnapshot``: missing rows must not
read as "every task ended".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from raylens.cost.model import Allocation, JobInfo, NodeSpan, Observation, Resources
from raylens.ray.snapshot import ClusterSnapshot, NodeSnapshot
from raylens.scrape_priority import yield_to_scrapes

log = logging.getLogger("raylens.cost")

REQUIRED_SOURCES = ("nodes", "jobs", "actors", "tasks")
# Task states in which the task holds its lease (its resources) on a node.
HOLDING_TASK_STATES = frozenset({"SUBMITTED_TO_WORKER", "RUNNING", "RUNNING_IN_RAY_GET", "RUNNING_IN_RAY_WAIT"})
_GROUP_RESOURCE = re.compile(r"^(CPU|GPU|memory)_group_(?:\d+_)?[0-9a-f]+$")
_ACCELERATOR_RESOURCE = re.compile(r"^accelerator_type:(.+)$")


class IncompleteSnapshot(RuntimeError):
    """A listing the cost engine needs failed this round; spend is accounted on the next good one."""


def held_resources(required: Mapping[str, float]) -> Resources:
    """CPU, GPU and memory a task or actor requires, placement-group bundle names included."""
    plain = ("CPU" in required) + ("GPU" in required) + ("memory" in required)
    if len(required) == plain:  # the common case: nothing but plain names
        return Resources(
            float(required.get("CPU", 0.0)), float(required.get("GPU", 0.0)), float(required.get("memory", 0.0))
        )
    amounts = {"CPU": 0.0, "GPU": 0.0, "memory": 0.0}
    grouped = {"CPU": 0.0, "GPU": 0.0, "memory": 0.0}
    for name, amount in required.items():
        if name in amounts:
            amounts[name] += float(amount)
            continue
        match = _GROUP_RESOURCE.match(name)
        if match:
            # A bundle task asks for both the wildcard and the indexed name: count the amount once.
            grouped[match.group(1)] = max(grouped[match.group(1)], float(amount))
    return Resources(
        amounts["CPU"] + grouped["CPU"], amounts["GPU"] + grouped["GPU"], amounts["memory"] + grouped["memory"]
    )


def _accelerator(node: NodeSnapshot) -> str:
    label = node.labels.get("ray.io/accelerator-type", "")
    if label:
        return label
    for name in node.resources_total:
        match = _ACCELERATOR_RESOURCE.match(name)
        if match:
            return match.group(1)
    return ""


def node_span(node: NodeSnapshot, taken_at: float) -> NodeSpan:
    start = node.start_time if node.start_time is not None else taken_at
    end = None
    if not node.alive:
        # A dead node without an end time is charged up to what was already accounted, no further.
        end = node.end_time if node.end_time is not None else start
    return NodeSpan(
        node_id=node.node_id,
        start_time=start,
        end_time=end,
        capacity=Resources.from_ray(node.resources_total),
        labels=node.labels,
        ip=node.ip,
        is_head=node.is_head,
        ray_resources=node.resources_total,
        instance_type=node.instance_type,
        market=node.market,
        accelerator_type=_accelerator(node),
    )


def observation_from_snapshot(snapshot: ClusterSnapshot) -> Observation:
    as_of = snapshot.as_of(REQUIRED_SOURCES)
    if as_of is None:
        missing = [
            f"{source}: {snapshot.sources[source].error if source in snapshot.sources else 'not read yet'}"
            for source in REQUIRED_SOURCES
            if not snapshot.has(source)
        ]
        raise IncompleteSnapshot("no current answer from Ray for " + "; ".join(missing))
    for source in ("actors", "tasks"):
        status = snapshot.sources.get(source)
        if status is not None and status.truncated:
            log.warning(
                "ray listing truncated; cost of the missing rows goes to idle",
                extra={"source": source, "missing": status.truncated},
            )
    nodes = [node_span(node, as_of) for node in snapshot.nodes if node.node_id]
    jobs = [
        JobInfo(
            job_id=job.job_id,
            submission_id=job.submission_id or "",
            metadata=job.metadata,
            start_time=job.start_time,
            end_time=job.end_time,
            entrypoint=job.entrypoint,
        )
        for job in snapshot.jobs
        if job.job_id
    ]
    allocations = []
    for actor in snapshot.actors:
        yield_to_scrapes()
        if actor.state != "ALIVE" or not actor.node_id:
            continue
        allocations.append(
            Allocation(
                allocation_id=f"actor:{actor.actor_id}",
                job_id=actor.job_id,
                node_id=actor.node_id,
                held=held_resources(actor.required_resources),
                kind="actor",
                name=actor.class_name,
            )
        )
    for task in snapshot.tasks:
        yield_to_scrapes()  # thousands of rows: a scrape that arrives meanwhile goes first
        if task.type != "NORMAL_TASK" or not task.node_id:
            continue
        if task.state in HOLDING_TASK_STATES:
            end = None
        elif task.state in ("FINISHED", "FAILED") and task.start_time is not None and task.end_time is not None:
            end = task.end_time
        else:
            continue
        allocations.append(
            Allocation(
                allocation_id=f"task:{task.task_id}:{task.attempt_number}",
                job_id=task.job_id,
                node_id=task.node_id,
                held=held_resources(task.required_resources),
                start_time=task.start_time,
                end_time=end,
                kind="task",
                name=task.name or task.func_or_class_name,
            )
        )
    return Observation(as_of, tuple(nodes), tuple(jobs), tuple(allocations))
