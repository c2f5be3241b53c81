"""Actor and task counts, and the resources each job holds, for the ray collector.

Names are folded to the ``ray.top_names`` most frequent (the rest as ``other``) to bound
cardinality; per-job series leave with their job (``hidden`` ids). Sample::

    raylens_ray_tasks{SessionName="session_…",name="preprocess",state="RUNNING"} 12.0
    raylens_ray_job_tasks{SessionName="session_…",job_id="02000000",state="RUNNING"} 12.0
    raylens_ray_job_resources_held{SessionName="session_…",job_id="02000000",resource="CPU"} 12.0
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from raylens.ray.snapshot import ClusterSnapshot

OTHER = "other"


class AnswerTallies:
    """Tallies of a source's rows, kept as long as the answer they were counted from is served."""

    def __init__(self) -> None:
        self._tallies: dict[str, tuple[tuple, Any]] = {}

    def get(self, purpose: str, rows: tuple, count: Callable[[], Any]) -> Any:
        """``count()`` once per answer: a snapshot reuses the very tuple of an answer that did not
        change, so the 10,000 rows of a task listing are tallied once when they arrive, not on every
        scrape (a scrape only serialises the tallies). Holding ``rows`` keeps the check exact."""
        cached = self._tallies.get(purpose)
        if cached is not None and cached[0] is rows:
            return cached[1]
        result = count()
        self._tallies[purpose] = (rows, result)
        return result


def actor_tally(snapshot: ClusterSnapshot) -> Counter[tuple[str, str, str]]:
    """Actors by (class name, state, job id)."""
    return Counter((actor.class_name, actor.state, actor.job_id) for actor in snapshot.actors)


def task_tally(snapshot: ClusterSnapshot) -> Counter[tuple[str, str, str]]:
    """Task attempts by (name, state, job id)."""
    return Counter((task.name or task.func_or_class_name, task.state, task.job_id) for task in snapshot.tasks)


def held_by_tasks(snapshot: ClusterSnapshot) -> dict[tuple[str, str], float]:
    """Resources running normal tasks hold, by (job id, resource)."""
    held: dict[tuple[str, str], float] = defaultdict(float)
    for task in snapshot.tasks:
        if task.state == "RUNNING" and task.type == "NORMAL_TASK":
            for resource, amount in task.required_resources.items():
                held[(task.job_id, resource)] += amount
    return held


def top_names(counts: Counter[str], limit: int) -> set[str]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {name for name, _ in ranked[:limit]}


def workload_count_families(
    session: str,
    tally: Counter[tuple[str, str, str]],
    hidden: Collection[str],
    kind: str,
    name_label: str,
    what: str,
    top_name_limit: int,
) -> Iterator[Metric]:
    """``raylens_ray_<kind>`` by name (top ``top_name_limit``) and state, and ``raylens_ray_job_<kind>``
    by job and state, from a (name, state, job id) tally."""
    names: Counter[str] = Counter()
    for (name, _, _), count in tally.items():
        names[name] += count
    keep = top_names(names, top_name_limit)
    by_name = GaugeMetricFamily(
        f"raylens_ray_{kind}",
        f"{what}, by {name_label} (top {top_name_limit}, the rest as `other`) and state.",
        labels=["SessionName", name_label, "state"],
    )
    folded: Counter[tuple[str, str]] = Counter()
    per_job: Counter[tuple[str, str]] = Counter()
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


def allocation_families(
    snapshot: ClusterSnapshot, tasks_held: Mapping[tuple[str, str], float], hidden: Collection[str]
) -> Iterator[Metric]:
    """Resources each job holds now: running normal tasks (``tasks_held``, from ``held_by_tasks``)
    plus alive actors (actor tasks run inside their actor's allocation, so they are not added again)."""
    held: dict[tuple[str, str], float] = defaultdict(float)
    for (job_id, resource), amount in tasks_held.items():
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
    for (job_id, resource), amount in sorted(held.items()):
        if job_id not in hidden:
            family.add_metric([snapshot.session_name, job_id, resource], amount)
    yield family
