"""Dollars per second at an instant: what each alive node costs now and who pays for it, from what
jobs hold at that instant, scaled to capacity (the gauges; the counters come from integration)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from raylens.cost.apportion import COMPUTE, KIND_NAMES, add_cost
from raylens.cost.attribution import IDLE_KEY
from raylens.cost.holdings import CPU_NOW, GPU_NOW, HELD_NOW, MEMORY_NOW, JobKey, Record, held_at
from raylens.cost.model import NodeSpan, Resources
from raylens.cost.pricing import NodePrice
from raylens.cost.quotas import Holding, NodeCapacity
from raylens.cost.steady import SteadyNode

LabelKey = tuple[str, str, str, str, str]


@dataclass
class Report:
    """What one ``advance`` found, for the collector: rates are dollars per second at ``time``."""

    time: float
    prices: dict[str, NodePrice]
    alive: list[str]
    node_rates: dict[str, list[float]]
    job_rates: dict[str, float]
    key_rates: dict[LabelKey, float]
    serve_rates: dict[tuple[str, str], float]
    capacities: list[NodeCapacity]
    # node -> effective_holdings' table (HELD_NOW entries: held now, max of held and used), job -> labels
    held_now: dict[str, dict[JobKey, list[float]]]
    labels: Mapping[str, tuple[str, str, str, str]]

    def holdings(self, with_nodes: bool = True) -> list[Holding]:
        """What each (user, project, team, instance type) holds now, for quotas."""
        groups: dict[tuple[str, str, str, str], list] = {}
        for node_id, held in self.held_now.items():
            instance_type = self.prices[node_id].instance_type
            for key, entry in held.items():
                if not entry[HELD_NOW]:
                    continue
                cpu, gpu = entry[CPU_NOW], entry[GPU_NOW]
                user, project, team, _workload = self.labels[key[0]]
                group = (user, project, team, instance_type)
                entry = groups.get(group)
                if entry is None:
                    entry = groups[group] = [0.0, 0.0, set()]
                entry[0] += cpu
                entry[1] += gpu
                if with_nodes and (cpu > 0 or gpu > 0):
                    entry[2].add(node_id)
        return [Holding(*group, cpu, gpu, frozenset(nodes)) for group, (cpu, gpu, nodes) in groups.items()]


def current_rates(
    now: float,
    nodes: Mapping[str, NodeSpan],
    prices: Mapping[str, NodePrice],
    rates: Mapping[str, tuple[float, float, float]],
    records: Mapping[str, list[Record]],
    labels: Mapping[str, tuple[str, str, str, str]],
    alive_now: Mapping[str, dict[JobKey, list[float]]] | None,
    storage_rate: Callable[[NodeSpan], float],
    network_rates: Mapping[str, float],
    steady: Mapping[str, SteadyNode] | None = None,
) -> Report:
    """Dollars per second at ``now``: what is held now, scaled to capacity at this instant.

    A node the integration just carried over as steady (``raylens.cost.steady``) pays its cached
    rates: all its records hold at ``now``, so they are the rates computed here otherwise."""
    alive = [node_id for node_id, node in nodes.items() if node.alive_at(now)]
    node_rates: dict[str, list[float]] = {}
    job_rates: dict[JobKey, list[float]] = {}
    idle = [0.0, 0.0, 0.0]
    held_now: dict[str, dict[JobKey, list[float]]] = {}
    for node_id in alive:
        node = nodes[node_id]
        capacity = node.capacity
        cpu_rate, gpu_rate, memory_rate = rates[node_id]
        compute = cpu_rate + gpu_rate + memory_rate
        storage = storage_rate(node)
        sent = network_rates.get(node_id, 0.0)
        node_rates[node_id] = [compute, storage, sent]
        # Known from the integration pass when this node took part in its last piece.
        held = alive_now[node_id] if alive_now and node_id in alive_now else held_at(records.get(node_id, ()), now)
        if not held or not any(entry[HELD_NOW] for entry in held.values()):
            idle[0] += compute
            idle[1] += storage
            idle[2] += sent
            continue
        held_now[node_id] = held
        storage_per_dollar = storage / compute if compute > 0 else 0.0
        sent_per_dollar = sent / compute if compute > 0 else 0.0
        cached = steady.get(node_id) if steady is not None else None
        if cached is not None and cached.held_now is held:
            attributed = cached.attributed
            for key, cost, _cpu, _gpu, _memory, _segments in cached.costs:
                add_cost(job_rates, key, cost, storage_per_dollar, sent_per_dollar)
        else:
            attributed = _job_rates(held, capacity, rates[node_id], storage_per_dollar, sent_per_dollar, job_rates)
        unheld = 1.0 - attributed / compute if compute > 0 else 1.0
        idle[0] += max(compute - attributed, 0.0)
        idle[1] += max(storage * unheld, 0.0)
        idle[2] += max(sent * unheld, 0.0)

    # Per job first (10,000 jobs rather than 100,000 job keys on nodes), then per label set.
    by_job: dict[str, list[float]] = {}
    serve_rates: dict[tuple[str, str], float] = defaultdict(float)
    for (job_id, application, deployment), costs in job_rates.items():
        sums = by_job.get(job_id)
        if sums is None:
            by_job[job_id] = costs[:]
        else:
            sums[0] += costs[0]
            sums[1] += costs[1]
            sums[2] += costs[2]
        if application:
            serve_rates[(application, deployment)] += costs[0] + costs[1] + costs[2]
    per_job: dict[str, float] = {}
    key_rates: dict[LabelKey, float] = defaultdict(float)
    for job_id, costs in by_job.items():
        per_job[job_id] = costs[0] + costs[1] + costs[2]
        label = labels[job_id]
        for kind, rate in enumerate(costs):
            if rate or kind == COMPUTE:
                key_rates[(*label, KIND_NAMES[kind])] += rate  # type: ignore[index]
    for kind, rate in enumerate(idle):
        if rate or kind == COMPUTE:
            key_rates[(*IDLE_KEY, KIND_NAMES[kind])] += rate
    capacities = [
        NodeCapacity(node_id, prices[node_id].instance_type, nodes[node_id].capacity.cpu, nodes[node_id].capacity.gpu)
        for node_id in alive
    ]
    return Report(
        time=now,
        prices=dict(prices),
        alive=alive,
        node_rates=node_rates,
        job_rates=dict(per_job),
        key_rates=dict(key_rates),
        serve_rates=dict(serve_rates),
        capacities=capacities,
        held_now=held_now,
        labels=labels,
    )


def _job_rates(
    held: Mapping[JobKey, list[float]],
    capacity: Resources,
    rates: tuple[float, float, float],
    storage_per_dollar: float,
    sent_per_dollar: float,
    job_rates: dict[JobKey, list[float]],
) -> float:
    """Add what each job key on one node pays now to ``job_rates``; returns the compute dollars per
    second attributed to jobs."""
    cpu_rate, gpu_rate, memory_rate = rates
    totals = [0.0, 0.0, 0.0]
    for entry in held.values():
        totals[0] += entry[CPU_NOW]
        totals[1] += entry[GPU_NOW]
        totals[2] += entry[MEMORY_NOW]
    cpu_price = cpu_rate / max(capacity.cpu, totals[0]) if capacity.cpu > 0 else 0.0
    gpu_price = gpu_rate / max(capacity.gpu, totals[1]) if capacity.gpu > 0 else 0.0
    memory_price = memory_rate / max(capacity.memory_bytes, totals[2]) if capacity.memory_bytes > 0 else 0.0
    attributed = 0.0
    for key, entry in held.items():
        if not entry[HELD_NOW]:
            continue
        cost = entry[CPU_NOW] * cpu_price + entry[GPU_NOW] * gpu_price + entry[MEMORY_NOW] * memory_price
        attributed += cost
        add_cost(job_rates, key, cost, storage_per_dollar, sent_per_dollar)
    return attributed
