"""Ray's allocations as records with effective times: when Ray gives no start or end time for an
allocation, it is taken to be the midpoint between the two observations that bracket the change (error
at most half an interval, zero on average); tasks end with their job, actors may outlive it."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from raylens.cost.attribution import serve_deployment
from raylens.cost.holdings import JobKey, Record
from raylens.cost.model import Allocation, JobInfo, NodeSpan, Observation
from raylens.cost.state import EngineState

UNKNOWN_JOB = "unknown"
INFINITY = math.inf


@dataclass
class Placement:
    """Records per node; the jobs holding anything not yet accounted; names run by undecided jobs."""

    by_node: dict[str, list[Record]]
    active: set[str]
    names: dict[str, set[str]]


def place_allocations(
    observation: Observation,
    nodes: Mapping[str, NodeSpan],
    jobs: Mapping[str, JobInfo],
    previous: Mapping[str, Allocation] | None,
    state: EngineState,
) -> Placement:
    """Allocations grouped by node, with effective times (see the module docstring) and amounts.

    ``previous`` is the last observation's live allocations (those gone since ended at the midpoint).
    Also notes which jobs hold anything not yet accounted and, for jobs whose workload is still
    undecided, the names of what they run.
    """
    now = observation.time
    before = state.time
    midpoint = (before + now) / 2.0 if before is not None else None
    accounted = before if before is not None else -INFINITY
    undecided = undecided_jobs(state)
    known = state.jobs
    capacities = {node_id: node.capacity for node_id, node in nodes.items()}
    by_node: dict[str, list[Record]] = defaultdict(list)
    names: dict[str, set[str]] = defaultdict(set)
    active: set[str] = set()
    keys: dict[tuple[str, str], JobKey] = {}

    def place(allocation: Allocation, start: float, end: float) -> None:
        capacity = capacities.get(allocation.node_id)
        if capacity is None or end <= accounted:
            return  # unknown node, or a finished task Ray still lists, already accounted for
        job_id = allocation.job_id or UNKNOWN_JOB
        active.add(job_id)
        if job_id in undecided or job_id not in known:
            names[job_id].add(allocation.name)
        held, used = allocation.held, allocation.used
        cpu, gpu, memory = held.cpu, held.gpu, held.memory_bytes
        if used is not None:
            cpu = used.cpu if used.cpu > cpu else cpu
            gpu = used.gpu if used.gpu > gpu else gpu
            memory = used.memory_bytes if used.memory_bytes > memory else memory
        elif capacity.cpu > 0:
            follows = cpu / capacity.cpu * capacity.memory_bytes
            memory = follows if follows > memory else memory
        if allocation.kind == "actor":
            cache_key = (job_id, allocation.name)
            key = keys.get(cache_key)
            if key is None:
                serve = serve_deployment(allocation.name)
                key = keys[cache_key] = (job_id, serve[0], serve[1]) if serve else (job_id, "", "")
        else:
            key = keys.get((job_id, ""))
            if key is None:
                key = keys[(job_id, "")] = (job_id, "", "")
        by_node[allocation.node_id].append((key, start, end, cpu, gpu, memory))

    current = {allocation.allocation_id for allocation in observation.allocations}
    first_look = previous is None or midpoint is None
    for allocation in observation.allocations:
        job = jobs.get(allocation.job_id)
        start = allocation.start_time
        if start is None:
            if first_look:
                start = job.start_time if job is not None and job.start_time is not None else -INFINITY
            elif allocation.allocation_id in previous:  # type: ignore[operator]
                start = -INFINITY
            else:
                start = midpoint
                if job is not None and job.start_time is not None and job.start_time > start:  # type: ignore[operator]
                    start = job.start_time
        end = allocation.end_time
        if end is None:
            if allocation.kind == "task" and job is not None and job.end_time is not None:
                # Tasks end with their job; actors may be detached (Serve) and outlive it.
                end = job.end_time
            else:
                end = INFINITY
        # Inlined `place` for the common case: a plain task, no measured usage.
        capacity = capacities.get(allocation.node_id)
        if (
            allocation.kind != "task" or allocation.used is not None or capacity is None or end <= accounted  # type: ignore[operator]
        ):
            place(allocation, start, end)  # type: ignore[arg-type]
            continue
        job_id = allocation.job_id or UNKNOWN_JOB
        if job_id not in active:
            active.add(job_id)
            key = keys[(job_id, "")] = (job_id, "", "")
        else:
            key = keys.get((job_id, "")) or (job_id, "", "")
        if job_id in undecided or job_id not in known:
            names[job_id].add(allocation.name)
        held = allocation.held
        cpu, memory = held.cpu, held.memory_bytes
        if capacity.cpu > 0:
            follows = cpu / capacity.cpu * capacity.memory_bytes
            if follows > memory:
                memory = follows
        by_node[allocation.node_id].append((key, start, end, cpu, held.gpu, memory))  # type: ignore[arg-type]
    if previous is not None and midpoint is not None:
        for allocation_id, allocation in previous.items():
            if allocation_id in current:
                continue
            job = jobs.get(allocation.job_id)
            end = midpoint
            if job is not None and job.end_time is not None and before < job.end_time < end:  # type: ignore[operator]
                end = job.end_time
            start = allocation.start_time if allocation.start_time is not None else -INFINITY
            place(allocation, start, end)
    return Placement(by_node, active, names)


def undecided_jobs(state: EngineState) -> set[str]:
    """Running jobs whose workload neither metadata nor the names of what they run have decided."""
    return {
        job_id
        for job_id, record in state.jobs.items()
        if record.workload_source in ("", "default") and record.end is None
    }
