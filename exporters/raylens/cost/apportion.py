"""A node's cost over a window, apportioned to the jobs holding its resources (OpenCost's model,
adapted to Ray): a job's share of a component (CPU, GPU, memory) is what it holds over the node's
capacity; storage and egress on the node follow its compute cost; idle is what nobody held."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from raylens.cost.holdings import CPU_S, FIRST, GPU_S, LAST, MEMORY_S, JobKey, Record, effective_holdings
from raylens.cost.model import NodeSpan, Resources
from raylens.cost.steady import SteadyNode, span_of, steady_node

COMPUTE, STORAGE, NETWORK = 0, 1, 2
KIND_NAMES = ("compute", "storage", "network")


@dataclass
class Apportioned:
    """Costs over one set of node windows: per node and per job key, by cost kind, and idle."""

    node: dict[str, list[float]] = field(default_factory=dict)
    job: dict[JobKey, list[float]] = field(default_factory=dict)
    idle: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    # node -> effective_holdings' table, when asked for the holdings at the end (for rates and quotas);
    # read only its *_NOW and HELD_NOW entries: a steady node's table has only those (cost/steady.py)
    alive: dict[str, dict[JobKey, list[float]]] = field(default_factory=dict)


def add_cost(
    totals: dict[JobKey, list[float]], key: JobKey, cost: float, storage_per_dollar: float, sent_per_dollar: float
) -> None:
    """Add ``cost`` (compute) to ``key``'s [compute, storage, network]: storage and egress on a node
    follow its compute cost."""
    costs = totals.get(key)
    if costs is None:
        totals[key] = [cost, cost * storage_per_dollar, cost * sent_per_dollar]
    else:
        costs[0] += cost
        costs[1] += cost * storage_per_dollar
        costs[2] += cost * sent_per_dollar


def apportion(
    windows: Mapping[str, tuple[float, float]],
    nodes: Mapping[str, NodeSpan],
    rates: Mapping[str, tuple[float, float, float]],
    records: Mapping[str, list[Record]],
    network: Mapping[str, float],
    storage_rate: Callable[[NodeSpan], float],
    record_explain: Callable[..., list[list[float]]] | None,
    rate_time: float | None,
    steady: dict[str, SteadyNode] | None = None,
) -> Apportioned:
    """Each node's cost over its window, and each job key's share of it; the rest is idle. With
    ``rate_time`` also what each node's jobs hold at that instant (``Apportioned.alive``).

    ``steady`` carries nodes whose holdings did not change from one call to the next
    (``raylens.cost.steady``): it is read, and updated for the nodes apportioned here."""
    result = Apportioned()
    idle = result.idle
    for node_id, (begin, finish) in windows.items():
        duration = finish - begin
        node = nodes[node_id]
        cpu_rate, gpu_rate, memory_rate = rates[node_id]
        compute = (cpu_rate + gpu_rate + memory_rate) * duration
        storage = storage_rate(node) * duration
        sent = network.get(node_id, 0.0)
        result.node[node_id] = [compute, storage, sent]
        node_records = records.get(node_id)
        if not node_records:
            if steady is not None and node_id in steady:
                steady.pop(node_id).settle()
            if rate_time is not None:
                result.alive[node_id] = {}
            idle[0] += compute
            idle[1] += storage
            idle[2] += sent
            continue
        capacity = node.capacity
        # Storage and egress on the node follow its compute cost.
        storage_per_dollar = storage / compute if compute > 0 else 0.0
        sent_per_dollar = sent / compute if compute > 0 else 0.0
        cached = steady.get(node_id) if steady is not None else None
        if cached is not None and cached.covers(node_records, rates[node_id], capacity, begin, finish, rate_time):
            attributed = _carry_over(
                cached, node_id, begin, finish, storage_per_dollar, sent_per_dollar, result, record_explain
            )
            if rate_time is not None:
                result.alive[node_id] = cached.held_now
        else:
            if cached is not None:
                cached.settle()  # its explain segments, before they are written here again
            attributed = _apportion_node(
                node_id,
                node_records,
                begin,
                finish,
                capacity,
                rates[node_id],
                storage_per_dollar,
                sent_per_dollar,
                result,
                record_explain,
                rate_time,
                steady,
            )
        unheld = 1.0 - attributed / compute if compute > 0 else 1.0
        # Rounding can leave -1e-18; idle is never negative by construction.
        idle[0] += max(compute - attributed, 0.0)
        idle[1] += max(storage * unheld, 0.0)
        idle[2] += max(sent * unheld, 0.0)
    return result


def _apportion_node(
    node_id: str,
    node_records: list[Record],
    begin: float,
    finish: float,
    capacity: Resources,
    rates: tuple[float, float, float],
    storage_per_dollar: float,
    sent_per_dollar: float,
    result: Apportioned,
    record_explain: Callable[..., list[list[float]]] | None,
    rate_time: float | None,
    steady: dict[str, SteadyNode] | None,
) -> float:
    """The full computation for one node; returns the compute dollars attributed to jobs."""
    job_costs = result.job
    table = effective_holdings(node_records, begin, finish, capacity, rate_time)
    if rate_time is not None:
        result.alive[node_id] = table
    cpu_rate, gpu_rate, memory_rate = rates
    cpu_price = cpu_rate / capacity.cpu if capacity.cpu > 0 else 0.0
    gpu_price = gpu_rate / capacity.gpu if capacity.gpu > 0 else 0.0
    memory_price = memory_rate / capacity.memory_bytes if capacity.memory_bytes > 0 else 0.0
    # Cached for the next call only when measured at the instant and every record covers the window.
    span = span_of(node_records) if steady is not None and rate_time is not None else None
    cacheable = span is not None and span[0] <= begin and finish < span[1] and rate_time < span[1]  # type: ignore[operator]
    segments: dict[JobKey, list[list[float]] | None] = {}
    attributed = 0.0
    cpu_capacity, gpu_capacity, memory_capacity = capacity.cpu, capacity.gpu, capacity.memory_bytes
    for key, entry in table.items():
        cpu, gpu, memory = entry[CPU_S], entry[GPU_S], entry[MEMORY_S]
        cost = cpu * cpu_price + gpu * gpu_price + memory * memory_price
        attributed += cost
        add_cost(job_costs, key, cost, storage_per_dollar, sent_per_dollar)
        if record_explain is not None:
            low, high = entry[FIRST], entry[LAST]
            held_for = high - low
            if held_for > 0:
                segments[key] = record_explain(
                    key,
                    node_id,
                    low,
                    high,
                    cpu / (cpu_capacity * held_for) if cpu_capacity > 0 else 0.0,
                    gpu / (gpu_capacity * held_for) if gpu_capacity > 0 else 0.0,
                    memory / (memory_capacity * held_for) if memory_capacity > 0 else 0.0,
                    cost * (1.0 + storage_per_dollar + sent_per_dollar),
                )
    if steady is not None:
        if cacheable:
            prices = (cpu_price, gpu_price, memory_price)
            steady[node_id] = steady_node(
                node_records,
                rates,
                capacity,
                span,  # type: ignore[arg-type]
                (begin, finish),
                table,
                prices,
                segments,
            )
        else:
            steady.pop(node_id, None)
    return attributed


def _carry_over(
    cached: SteadyNode,
    node_id: str,
    begin: float,
    finish: float,
    storage_per_dollar: float,
    sent_per_dollar: float,
    result: Apportioned,
    record_explain: Callable[..., list[list[float]]] | None,
) -> float:
    """A steady node: each job key pays its cached rate for the window; returns the compute dollars
    attributed to jobs."""
    job_costs = result.job
    duration = finish - begin
    spread = 1.0 + storage_per_dollar + sent_per_dollar
    for key, rate, _cpu_share, _gpu_share, _memory_share, _segments in cached.costs:
        cost = rate * duration
        add_cost(job_costs, key, cost, storage_per_dollar, sent_per_dollar)
    if record_explain is not None:
        pending = cached.explain_pending
        if -1e-6 < pending[0] - begin < 1e-6:
            # The explain log's segments here continue with the same shares: extended lazily.
            pending[0] = finish
            pending[1] += duration * spread
        else:
            cached.settle()
            for key, rate, cpu_share, gpu_share, memory_share, _segments in cached.costs:
                record_explain(
                    key, node_id, begin, finish, cpu_share, gpu_share, memory_share, rate * duration * spread
                )
            pending[0] = finish
    return cached.attributed * duration
