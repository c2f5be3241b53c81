"""The cost engine: integrates node prices over node lifetimes and apportions them to jobs.

Pure and clock-free: ``advance(observation)`` integrates spend from where the state left off up to
``observation.time``; a test drives it with a scripted timeline, the exporter with Ray snapshots.

Model (OpenCost's, adapted to Ray; docs/cost-model.md has a worked example):

* A node costs its price for every second between its start and end time (Ray's own timestamps), so
  spend is exact however seldom the exporter looks, and a restart loses nothing.
* The price splits into CPU, GPU and memory components. A job's share of a component is the resource it
  holds there (max of held and used; memory follows its CPU share when usage is unknown) over the node's
  capacity; when holdings exceed capacity they are scaled down to it.
* Idle = node cost - the sum of job costs on it. Storage (spill, volumes) and network egress on a node
  are shared like its compute cost, the rest going to idle.
* When Ray gives no start or end time for an allocation, it is taken to be the midpoint between the two
  observations that bracket the change (error at most half an interval, zero on average).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from raylens.config import CostConfig
from raylens.cost.attribution import (
    DEFAULT_WORKLOAD,
    IDLE_KEY,
    UNALLOCATED,
    WorkloadClassifier,
    job_labels,
    job_workload,
    serve_deployment,
)
from raylens.cost.budgets import Budget
from raylens.cost.catalog import HOURS_PER_MONTH
from raylens.cost.model import Allocation, JobInfo, NodeSpan, Observation, Resources
from raylens.cost.periods import PERIODS, boundaries, period_end, period_start
from raylens.cost.pricing import GIB, SECONDS_PER_HOUR, NodePrice, NodePricer, node_matches
from raylens.cost.quotas import Holding, NodeCapacity
from raylens.cost.state import EngineState, JobRecord, NodeRecord, PeriodRecord

log = logging.getLogger("raylens.cost")

COMPUTE, STORAGE, NETWORK = 0, 1, 2
KIND_NAMES = ("compute", "storage", "network")
UNKNOWN_JOB = "unknown"
INFINITY = math.inf

# (job_id, serve application, serve deployment): the unit costs are apportioned to.
JobKey = tuple[str, str, str]
# (job key, start, end, cpu, gpu, memory bytes) with effective times and amounts.
Record = tuple[JobKey, float, float, float, float, float]
LabelKey = tuple[str, str, str, str, str]


@dataclass
class Apportioned:
    """Costs over one set of node windows: per node and per job key, by cost kind, and idle."""

    node: dict[str, list[float]] = field(default_factory=dict)
    job: dict[JobKey, list[float]] = field(default_factory=dict)
    idle: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    # node -> effective_holdings' table, when asked for the holdings at the end (for rates and quotas)
    alive: dict[str, dict[JobKey, list[float]]] = field(default_factory=dict)


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


class CostEngine:
    def __init__(
        self,
        config: CostConfig,
        pricer: NodePricer,
        budgets: Sequence[Budget] = (),
        state: EngineState | None = None,
        explain: ExplainLog | None = None,
    ):
        self.config = config
        self.pricer = pricer
        self.budgets = tuple(budgets)
        self.zone = ZoneInfo(config.timezone)
        self.state = state or EngineState()
        self.explain = explain or ExplainLog()
        self._previous: dict[str, Allocation] | None = None
        self._classifier = WorkloadClassifier()
        self._storage_rates: dict[str, float] = {}
        self._network_rates: dict[str, float] = {}
        self._active_jobs: set[str] = set()
        self._names: dict[str, set[str]] = {}
        self._last: tuple[Observation, Report] | None = None

    # ------------------------------------------------------------------ public

    def advance(self, observation: Observation) -> Report:
        """Account spend up to ``observation.time`` and return the rates at that instant."""
        if self._last is not None and self._last[0] is observation:
            return self._last[1]  # the same (cached) observation again: nothing new to account
        now = observation.time
        state = self.state
        nodes = {node.node_id: node for node in observation.nodes}
        jobs = {job.job_id: job for job in observation.jobs if job.job_id}
        prices = {node_id: self.pricer.price(node) for node_id, node in nodes.items()}
        explained = self.explain.nodes
        for node_id, node in nodes.items():
            explained[node_id] = (prices[node_id], node)
        records = self._records(observation, nodes, jobs)
        labels = self._update_jobs(observation, jobs, self._names)
        rates = {node_id: price.component_dollars_per_second() for node_id, price in prices.items()}

        alive_now: dict[str, dict[JobKey, list[float]]] | None = None
        if state.time is None or now > state.time:
            alive_now = self._integrate(now, nodes, prices, rates, records, labels)
            state.time = now
        self._previous = {
            allocation.allocation_id: allocation
            for allocation in observation.allocations
            if allocation.end_time is None or allocation.end_time > now
        }
        report = self._rates(now, nodes, prices, rates, records, labels, alive_now)
        self._forget_old(now, nodes, jobs)
        self._last = (observation, report)
        return report

    def budget_spend(self, budget: Budget) -> float:
        period = self.state.periods.get(budget.period)
        return period.spend.get(budget.key, 0.0) if period else 0.0

    def period_bounds(self, period: str, now: float) -> tuple[float, float]:
        return period_start(period, now, self.zone), period_end(period, now, self.zone)

    # ------------------------------------------------------------------ preparation

    def _records(
        self, observation: Observation, nodes: Mapping[str, NodeSpan], jobs: Mapping[str, JobInfo]
    ) -> dict[str, list[Record]]:
        """Allocations grouped by node, with effective times (see the module docstring) and amounts.

        Also notes which jobs hold anything not yet accounted (``_active_jobs``) and, for jobs whose
        workload is still undecided, the names of what they run (``_names``).
        """
        now = observation.time
        previous = self._previous
        before = self.state.time
        midpoint = (before + now) / 2.0 if before is not None else None
        accounted = before if before is not None else -INFINITY
        undecided = self._undecided_jobs()
        known = self.state.jobs
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
        self._active_jobs = active
        self._names = names
        return by_node

    def _undecided_jobs(self) -> set[str]:
        return {
            job_id
            for job_id, record in self.state.jobs.items()
            if record.workload_source in ("", "default") and record.end is None
        }

    def _update_jobs(
        self,
        observation: Observation,
        jobs: Mapping[str, JobInfo],
        names: Mapping[str, set[str]],
    ) -> dict[str, tuple[str, str, str, str]]:
        """Create or refresh job records; return job id -> (user, project, team, workload)."""
        config = self.config
        now = observation.time
        retention = config.finished_retention_seconds
        active = self._active_jobs
        # Ray lists every job it ever ran; long-finished ones without allocations need no record.
        seen = active | {
            job_id
            for job_id, info in jobs.items()
            if info.end_time is None or now - info.end_time <= retention or job_id in self.state.jobs
        }
        labels = {}
        for job_id in seen:
            info = jobs.get(job_id)
            record = self.state.jobs.get(job_id)
            if record is None:
                record = self.state.jobs[job_id] = JobRecord()
                record.user = record.project = record.team = UNALLOCATED
            if info is not None:
                found = job_labels(info.metadata, config)
                record.user, record.project, record.team = found.user, found.project, found.team
                record.submission_id = info.submission_id or ""
                record.start, record.end = info.start_time, info.end_time
                workload = job_workload(info.metadata, config)
                if workload:
                    record.workload, record.workload_source = workload, "metadata"
            if record.workload_source in ("", "default") and job_id in names:
                inferred = self._classifier.classify(names[job_id])
                if inferred != DEFAULT_WORKLOAD:
                    record.workload, record.workload_source = inferred, "inferred"
                else:
                    record.workload, record.workload_source = DEFAULT_WORKLOAD, "default"
            if not record.workload:
                record.workload, record.workload_source = DEFAULT_WORKLOAD, "default"
            record.last_seen = now
            labels[job_id] = (record.user, record.project, record.team, record.workload)
        for job_id, record in self.state.jobs.items():
            if job_id not in labels:
                labels[job_id] = (record.user, record.project, record.team, record.workload)
        return labels

    def _storage_rate(self, node: NodeSpan) -> float:
        """Dollars per second of the node's volumes and spill."""
        rate = self._storage_rates.get(node.node_id)
        if rate is None:
            rate = sum(
                volume.size_gib * volume.usd_per_gib_month
                for volume in self.config.volumes
                if node_matches(volume.match, node)
            )
            self._storage_rates[node.node_id] = rate
        spill = node.spilled_bytes / GIB * self.config.spill_usd_per_gib_month
        return (rate + spill) / HOURS_PER_MONTH / SECONDS_PER_HOUR

    # ------------------------------------------------------------------ integration

    def _integrate(
        self,
        now: float,
        nodes: Mapping[str, NodeSpan],
        prices: Mapping[str, NodePrice],
        rates: Mapping[str, tuple[float, float, float]],
        records: Mapping[str, list[Record]],
        labels: Mapping[str, tuple[str, str, str, str]],
    ) -> dict[str, dict[JobKey, list[float]]]:
        """Account every node's window up to ``now``, cut at period boundaries; return what each
        node's jobs hold at ``now``."""
        state = self.state
        windows: dict[str, tuple[float, float]] = {}
        egress: dict[str, float] = {}
        for node_id, node in nodes.items():
            record = state.nodes.get(node_id)
            start = node.start_time if record is None else max(record.until, node.start_time)
            end = now if node.end_time is None else min(now, node.end_time)
            if end > start:
                windows[node_id] = (start, end)
            egress[node_id] = self._egress_dollars(node, record)
        # Egress is usage-priced: its "rate" is the average over the interval just accounted.
        self._network_rates = {
            node_id: egress[node_id] / (end - start) for node_id, (start, end) in windows.items() if egress[node_id]
        }
        lower = min((start for start, _end in windows.values()), default=now)
        for period in PERIODS:
            begins = period_start(period, lower, self.zone)
            if period not in state.periods or state.periods[period].start < begins:
                state.periods[period] = PeriodRecord(begins)

        cuts = boundaries(PERIODS, lower, now, self.zone)
        edges = [lower, *sorted({time for time, _period in cuts}), now]
        alive_now: dict[str, dict[JobKey, list[float]]] = {}
        for index in range(len(edges) - 1):
            low, high = edges[index], edges[index + 1]
            if high > low:
                if len(edges) == 2:
                    sub_windows, network = windows, {node_id: cost for node_id, cost in egress.items() if cost}
                else:
                    sub_windows, network = {}, {}
                    for node_id, (start, end) in windows.items():
                        begin, finish = max(start, low), min(end, high)
                        if finish > begin:
                            sub_windows[node_id] = (begin, finish)
                            if egress[node_id]:
                                network[node_id] = egress[node_id] * (finish - begin) / (end - start)
                last = high == now
                part = self._apportion(
                    sub_windows, nodes, rates, records, network, explain=True, rate_time=now if last else None
                )
                self._accumulate(part, nodes, prices, labels, low)
                if last:
                    alive_now = part.alive
            for time, period in cuts:
                if time == high and state.periods[period].start < time:
                    state.periods[period] = PeriodRecord(time)
        use_egress = bool(self.config.egress_usd_per_gib)
        for node_id, node in nodes.items():
            record = state.nodes.get(node_id)
            if record is None:
                record = state.nodes[node_id] = NodeRecord(node.start_time, node.end_time, node.start_time)
            record.end = node.end_time
            if node_id in windows:
                record.until = windows[node_id][1]
            # Bytes sent are charged once the node has a window to spread them over.
            if node.egress_bytes_total is not None and (node_id in windows or not use_egress):
                record.egress_bytes = node.egress_bytes_total
            record.last_seen = now
            record.labels = self._node_label_values(node, prices[node_id])
        return alive_now

    def _egress_dollars(self, node: NodeSpan, record: NodeRecord | None) -> float:
        if not self.config.egress_usd_per_gib or node.egress_bytes_total is None:
            return 0.0
        previous = record.egress_bytes if record is not None else 0.0
        sent = node.egress_bytes_total - (previous or 0.0)
        if sent < 0:  # the node's counter restarted
            sent = node.egress_bytes_total
        return sent / GIB * self.config.egress_usd_per_gib

    def _apportion(
        self,
        windows: Mapping[str, tuple[float, float]],
        nodes: Mapping[str, NodeSpan],
        rates: Mapping[str, tuple[float, float, float]],
        records: Mapping[str, list[Record]],
        network: Mapping[str, float],
        explain: bool,
        rate_time: float | None,
    ) -> Apportioned:
        result = Apportioned()
        job_costs = result.job
        idle = result.idle
        record_explain = self.explain.record if explain else None
        for node_id, (begin, finish) in windows.items():
            duration = finish - begin
            node = nodes[node_id]
            cpu_rate, gpu_rate, memory_rate = rates[node_id]
            compute = (cpu_rate + gpu_rate + memory_rate) * duration
            storage = self._storage_rate(node) * duration
            sent = network.get(node_id, 0.0)
            result.node[node_id] = [compute, storage, sent]
            node_records = records.get(node_id)
            if not node_records:
                if rate_time is not None:
                    result.alive[node_id] = {}
                idle[0] += compute
                idle[1] += storage
                idle[2] += sent
                continue
            capacity = node.capacity
            table = effective_holdings(node_records, begin, finish, capacity, rate_time)
            if rate_time is not None:
                result.alive[node_id] = table
            cpu_price = cpu_rate / capacity.cpu if capacity.cpu > 0 else 0.0
            gpu_price = gpu_rate / capacity.gpu if capacity.gpu > 0 else 0.0
            memory_price = memory_rate / capacity.memory_bytes if capacity.memory_bytes > 0 else 0.0
            # Storage and egress on the node follow its compute cost.
            storage_per_dollar = storage / compute if compute > 0 else 0.0
            sent_per_dollar = sent / compute if compute > 0 else 0.0
            attributed = 0.0
            cpu_capacity, gpu_capacity, memory_capacity = capacity.cpu, capacity.gpu, capacity.memory_bytes
            for key, entry in table.items():
                cpu, gpu, memory = entry[CPU_S], entry[GPU_S], entry[MEMORY_S]
                cost = cpu * cpu_price + gpu * gpu_price + memory * memory_price
                attributed += cost
                costs = job_costs.get(key)
                if costs is None:
                    job_costs[key] = [cost, cost * storage_per_dollar, cost * sent_per_dollar]
                else:
                    costs[0] += cost
                    costs[1] += cost * storage_per_dollar
                    costs[2] += cost * sent_per_dollar
                if record_explain is not None:
                    low, high = entry[FIRST], entry[LAST]
                    span = high - low
                    if span > 0:
                        record_explain(
                            key,
                            node_id,
                            low,
                            high,
                            cpu / (cpu_capacity * span) if cpu_capacity > 0 else 0.0,
                            gpu / (gpu_capacity * span) if gpu_capacity > 0 else 0.0,
                            memory / (memory_capacity * span) if memory_capacity > 0 else 0.0,
                            cost * (1.0 + storage_per_dollar + sent_per_dollar),
                        )
            unheld = 1.0 - attributed / compute if compute > 0 else 1.0
            # Rounding can leave -1e-18; idle is never negative by construction.
            idle[0] += max(compute - attributed, 0.0)
            idle[1] += max(storage * unheld, 0.0)
            idle[2] += max(sent * unheld, 0.0)
        return result

    def _accumulate(
        self,
        part: Apportioned,
        nodes: Mapping[str, NodeSpan],
        prices: Mapping[str, NodePrice],
        labels: Mapping[str, tuple[str, str, str, str]],
        begin: float,
    ) -> None:
        """Add one sub-interval (starting at ``begin``, inside one period of each kind) to the totals."""
        state = self.state
        spend: dict[str, float] = defaultdict(float)
        for node_id, costs in part.node.items():
            record = state.nodes.get(node_id)
            if record is None:
                node = nodes[node_id]
                record = state.nodes[node_id] = NodeRecord(node.start_time, node.end_time, node.start_time)
            dollars = record.dollars
            dollars[0] += costs[0]
            dollars[1] += costs[1]
            dollars[2] += costs[2]
            total = costs[0] + costs[1] + costs[2]
            spend["org"] += total
            spend["cloud:" + prices[node_id].cloud] += total
        by_labels: dict[tuple[str, str, str, str], list[float]] = {}
        jobs = state.jobs
        for key, costs in part.job.items():
            job_id, application, deployment = key
            total = costs[0] + costs[1] + costs[2]
            jobs[job_id].dollars += total
            if application:
                serve_key = (application, deployment)
                state.serve[serve_key] = state.serve.get(serve_key, 0.0) + total
            label = labels[job_id]
            sums = by_labels.get(label)
            if sums is None:
                by_labels[label] = list(costs)
            else:
                sums[0] += costs[0]
                sums[1] += costs[1]
                sums[2] += costs[2]
        allocation = state.allocation
        for label, costs in [*by_labels.items(), (IDLE_KEY, part.idle)]:
            for kind, dollars in enumerate(costs):
                if dollars or kind == COMPUTE:
                    key = (*label, KIND_NAMES[kind])
                    allocation[key] = allocation.get(key, 0.0) + dollars  # type: ignore[index]
            if label is IDLE_KEY:
                continue
            user, project, team, _workload = label
            total = costs[0] + costs[1] + costs[2]
            spend["user:" + user] += total
            spend["project:" + project] += total
            spend["team:" + team] += total
        for period in state.periods.values():
            if begin < period.start:  # spend found late for an earlier period (a node seen late)
                continue
            for key, dollars in spend.items():
                period.spend[key] = period.spend.get(key, 0.0) + dollars

    # ------------------------------------------------------------------ rates and housekeeping

    def _rates(
        self,
        now: float,
        nodes: Mapping[str, NodeSpan],
        prices: Mapping[str, NodePrice],
        rates: Mapping[str, tuple[float, float, float]],
        records: Mapping[str, list[Record]],
        labels: Mapping[str, tuple[str, str, str, str]],
        alive_now: Mapping[str, dict[JobKey, list[float]]] | None,
    ) -> Report:
        """Dollars per second at ``now``: what is held now, scaled to capacity at this instant."""
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
            storage = self._storage_rate(node)
            sent = self._network_rates.get(node_id, 0.0)
            node_rates[node_id] = [compute, storage, sent]
            # Known from the integration pass when this node took part in its last piece.
            held = alive_now[node_id] if alive_now and node_id in alive_now else held_at(records.get(node_id, ()), now)
            if not held or not any(entry[HELD_NOW] for entry in held.values()):
                idle[0] += compute
                idle[1] += storage
                idle[2] += sent
                continue
            held_now[node_id] = held
            totals = [0.0, 0.0, 0.0]
            for entry in held.values():
                totals[0] += entry[CPU_NOW]
                totals[1] += entry[GPU_NOW]
                totals[2] += entry[MEMORY_NOW]
            cpu_price = cpu_rate / max(capacity.cpu, totals[0]) if capacity.cpu > 0 else 0.0
            gpu_price = gpu_rate / max(capacity.gpu, totals[1]) if capacity.gpu > 0 else 0.0
            memory_price = memory_rate / max(capacity.memory_bytes, totals[2]) if capacity.memory_bytes > 0 else 0.0
            storage_per_dollar = storage / compute if compute > 0 else 0.0
            sent_per_dollar = sent / compute if compute > 0 else 0.0
            attributed = 0.0
            for key, entry in held.items():
                if not entry[HELD_NOW]:
                    continue
                cost = entry[CPU_NOW] * cpu_price + entry[GPU_NOW] * gpu_price + entry[MEMORY_NOW] * memory_price
                attributed += cost
                costs = job_rates.get(key)
                if costs is None:
                    job_rates[key] = [cost, cost * storage_per_dollar, cost * sent_per_dollar]
                else:
                    costs[0] += cost
                    costs[1] += cost * storage_per_dollar
                    costs[2] += cost * sent_per_dollar
            unheld = 1.0 - attributed / compute if compute > 0 else 1.0
            idle[0] += max(compute - attributed, 0.0)
            idle[1] += max(storage * unheld, 0.0)
            idle[2] += max(sent * unheld, 0.0)

        per_job: dict[str, float] = defaultdict(float)
        serve_rates: dict[tuple[str, str], float] = defaultdict(float)
        key_rates: dict[LabelKey, float] = defaultdict(float)
        for (job_id, application, deployment), costs in job_rates.items():
            total = costs[0] + costs[1] + costs[2]
            per_job[job_id] += total
            if application:
                serve_rates[(application, deployment)] += total
            label = labels[job_id]
            for kind, rate in enumerate(costs):
                if rate or kind == COMPUTE:
                    key_rates[(*label, KIND_NAMES[kind])] += rate  # type: ignore[index]
        for kind, rate in enumerate(idle):
            if rate or kind == COMPUTE:
                key_rates[(*IDLE_KEY, KIND_NAMES[kind])] += rate
        capacities = [
            NodeCapacity(
                node_id, prices[node_id].instance_type, nodes[node_id].capacity.cpu, nodes[node_id].capacity.gpu
            )
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

    def _forget_old(self, now: float, nodes: Mapping[str, NodeSpan], jobs: Mapping[str, JobInfo]) -> None:
        """Drop ended nodes and jobs after the retention time.

        A dead node stays while Ray still lists it (Ray caches a bounded number): its record is what
        stops its lifetime from being counted again. A finished job is not re-created from the job list
        (see ``_update_jobs``), only by allocations that still reference it.
        """
        retention = self.config.finished_retention_seconds
        state = self.state
        for node_id in list(state.nodes):
            if node_id in nodes:
                continue
            record = state.nodes[node_id]
            if record.end is None:
                # Ray stopped listing the node without an end time: it ended when last accounted.
                record.end = record.until
            if now - record.end > retention:
                del state.nodes[node_id]
                self.pricer.forget(node_id)
                self._storage_rates.pop(node_id, None)
                self.explain.nodes.pop(node_id, None)
        for job_id in list(state.jobs):
            if job_id in self._active_jobs:
                continue
            record = state.jobs[job_id]
            ended = record.end if record.end is not None else (None if job_id in jobs else record.last_seen)
            if ended is not None and now - ended > retention:
                del state.jobs[job_id]
                self.explain.jobs.pop(job_id, None)

    def _node_label_values(self, node: NodeSpan, price: NodePrice) -> list[str]:
        return [price.instance_type, price.market] + [
            node.labels.get(key, "") for key in self.config.export_node_labels
        ]

    def node_label_values(self, node_id: str) -> list[str]:
        record = self.state.nodes.get(node_id)
        return list(record.labels) if record is not None and record.labels else []


# An entry of effective_holdings' table, per job key on one node: resource-seconds in the interval
# (scaled to capacity), the amounts held at the rate instant, the first and last instant held, and
# whether it is held at the rate instant (1.0) or not (0.0).
CPU_S, GPU_S, MEMORY_S, CPU_NOW, GPU_NOW, MEMORY_NOW, FIRST, LAST, HELD_NOW = range(9)


def held_at(records: Iterable[Record], time: float) -> dict[JobKey, list[float]]:
    """What each job key holds at ``time``, as effective_holdings' table entries."""
    held: dict[JobKey, list[float]] = {}
    for key, start, end, cpu, gpu, memory in records:
        if start <= time < end:
            entry = held.get(key)
            if entry is None:
                held[key] = [0.0, 0.0, 0.0, cpu, gpu, memory, time, time, 1.0]
            else:
                entry[CPU_NOW] += cpu
                entry[GPU_NOW] += gpu
                entry[MEMORY_NOW] += memory
    return held


def _scaled(amounts: list[float], capacity: Resources, duration: float, totals: list[float]) -> list[float]:
    limits = (capacity.cpu * duration, capacity.gpu * duration, capacity.memory_bytes * duration)
    return [
        amount * limit / total if total > limit else amount
        for amount, limit, total in zip(amounts, limits, totals, strict=True)
    ]


def effective_holdings(
    records: Sequence[Record],
    begin: float,
    finish: float,
    capacity: Resources,
    rate_time: float | None = None,
) -> dict[JobKey, list[float]]:
    """Per job key on a node: the resource-seconds (CPU, GPU, memory bytes) it holds in
    [begin, finish], scaled at every instant so that together they never exceed the node's capacity;
    what it holds at ``rate_time``; and the first and last instant it holds anything (entries indexed
    by ``CPU_S``…``HELD_NOW``).

    Usually nothing is over capacity and one pass suffices. When holdings exceed it at some instant,
    with scale_r(t) = min(1, capacity_r / held_r(t)) and S_r(t) its integral from ``begin``, a record
    holding a constant amount over [low, high] is charged amount x (S_r(high) - S_r(low)): exact,
    and linear in records plus the instants where holdings change.
    """
    # One entry per key so a record costs one dictionary lookup: this runs once per allocation.
    table: dict[JobKey, list[float]] = {}
    measure_now = rate_time is not None
    moment = rate_time if rate_time is not None else 0.0
    full_cpu = full_gpu = full_memory = 0.0
    partial: list[Record] = []
    for record in records:
        key, start, end, cpu, gpu, memory = record
        low = begin if start < begin else start
        high = finish if end > finish else end
        overlap = high - low
        if overlap <= 0:
            continue
        holds_now = measure_now and start <= moment < end
        entry = table.get(key)
        if entry is None:
            if holds_now:
                table[key] = [cpu * overlap, gpu * overlap, memory * overlap, cpu, gpu, memory, low, high, 1.0]
            else:
                table[key] = [cpu * overlap, gpu * overlap, memory * overlap, 0.0, 0.0, 0.0, low, high, 0.0]
        else:
            entry[0] += cpu * overlap
            entry[1] += gpu * overlap
            entry[2] += memory * overlap
            if holds_now:
                entry[3] += cpu
                entry[4] += gpu
                entry[5] += memory
                entry[8] = 1.0
            if low < entry[6]:
                entry[6] = low
            if high > entry[7]:
                entry[7] = high
        if low == begin and high == finish:
            full_cpu += cpu
            full_gpu += gpu
            full_memory += memory
        else:
            partial.append(record)
    limits = (capacity.cpu, capacity.gpu, capacity.memory_bytes)
    if not partial:
        if full_cpu <= limits[0] and full_gpu <= limits[1] and full_memory <= limits[2]:
            return table
        totals = [sum(entry[r] for entry in table.values()) for r in range(3)]
        for entry in table.values():
            entry[0:3] = _scaled(entry[0:3], capacity, finish - begin, totals)
        return table
    # Holdings change only where a partial record starts or ends: sweep those instants.
    changes: dict[float, list[float]] = {}
    for _key, start, end, cpu, gpu, memory in partial:
        for time, sign in ((start if start > begin else begin, 1.0), (end if end < finish else finish, -1.0)):
            delta = changes.get(time)
            if delta is None:
                delta = changes[time] = [0.0, 0.0, 0.0]
            delta[0] += sign * cpu
            delta[1] += sign * gpu
            delta[2] += sign * memory
    times = sorted({begin, finish, *changes})
    running = [full_cpu, full_gpu, full_memory]
    over = False
    for time in times[:-1]:
        delta = changes.get(time)
        if delta is not None:
            running[0] += delta[0]
            running[1] += delta[1]
            running[2] += delta[2]
        if any(amount > limit * (1 + 1e-12) for amount, limit in zip(running, limits, strict=True)):
            over = True
            break
    if not over:
        return table
    running = [full_cpu, full_gpu, full_memory]
    cumulative = [0.0, 0.0, 0.0]
    integral: dict[float, tuple[float, float, float]] = {begin: (0.0, 0.0, 0.0)}
    for time, following in itertools.pairwise(times):
        delta = changes.get(time)
        if delta is not None:
            running[0] += delta[0]
            running[1] += delta[1]
            running[2] += delta[2]
        piece = following - time
        for resource in range(3):
            amount, limit = running[resource], limits[resource]
            cumulative[resource] += piece * (limit / amount if amount > limit else 1.0)
        integral[following] = (cumulative[0], cumulative[1], cumulative[2])
    for entry in table.values():
        entry[0] = entry[1] = entry[2] = 0.0
    for key, start, end, cpu, gpu, memory in records:
        low = begin if start < begin else start
        high = finish if end > finish else end
        if high <= low:
            continue
        at_low, at_high = integral[low], integral[high]
        entry = table[key]
        entry[0] += cpu * (at_high[0] - at_low[0])
        entry[1] += gpu * (at_high[1] - at_low[1])
        entry[2] += memory * (at_high[2] - at_low[2])
    return table


@dataclass
class ExplainLog:
    """How each job's cost came about, as coalesced segments per node, and each node's pricing.

    Segment: [start, end, cpu share, gpu share, memory share, dollars]; consecutive intervals with the
    same shares merge, and only the last ``MAX_SEGMENTS`` per (job, node) are kept.
    """

    MAX_SEGMENTS = 50
    jobs: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    nodes: dict[str, tuple[NodePrice, NodeSpan | None]] = field(default_factory=dict)

    def record(
        self,
        key: JobKey,
        node_id: str,
        start: float,
        end: float,
        cpu: float,
        gpu: float,
        memory: float,
        dollars: float,
    ) -> None:
        job_id, application, deployment = key
        where = node_id if not application else f"{node_id} serve {application}/{deployment}"
        by_node = self.jobs.get(job_id)
        if by_node is None:
            by_node = self.jobs[job_id] = {}
        segments = by_node.get(where)
        if segments is None:
            by_node[where] = [[start, end, cpu, gpu, memory, dollars]]
            return
        last = segments[-1]
        if (
            -1e-6 < last[1] - start < 1e-6
            and -1e-9 < last[2] - cpu < 1e-9
            and -1e-9 < last[3] - gpu < 1e-9
            and -1e-9 < last[4] - memory < 1e-9
        ):
            last[1] = end
            last[5] += dollars
            return
        segments.append([start, end, cpu, gpu, memory, dollars])
        if len(segments) > self.MAX_SEGMENTS:
            del segments[0]

    def to_json(self, copy: bool = False) -> dict[str, object]:
        """JSON-ready data; ``copy`` makes it independent of later changes (for a background write)."""
        jobs = self.jobs
        if copy:
            jobs = {
                job_id: {where: [segment[:] for segment in segments] for where, segments in by_node.items()}
                for job_id, by_node in jobs.items()
            }
        return {
            "jobs": jobs,
            "nodes": {
                node_id: {
                    "price": price.to_dict(),
                    "start": span.start_time if span else None,
                    "end": span.end_time if span else None,
                    "ip": span.ip if span else "",
                    "is_head": bool(span and span.is_head),
                    "labels": dict(span.labels) if span else {},
                    "capacity": [span.capacity.cpu, span.capacity.gpu, span.capacity.memory_bytes] if span else [],
                }
                for node_id, (price, span) in self.nodes.items()
            },
        }


def total_spend(state: EngineState) -> float:
    """All dollars accounted so far (every node that is still in the state)."""
    return sum(sum(record.dollars) for record in state.nodes.values())


def allocation_total(state: EngineState, kinds: Iterable[str] = KIND_NAMES) -> float:
    wanted = set(kinds)
    return sum(value for key, value in state.allocation.items() if key[4] in wanted)
