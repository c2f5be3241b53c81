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

One concern per module: ``placement`` (allocations → records with effective times), ``holdings`` (what
each job holds, scaled to capacity), ``apportion`` (a window's cost per job), ``rates`` (the rate at an
instant), ``explain_log`` (how each cost came about); this module integrates over periods and keeps
the state.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from raylens.config import CostConfig
from raylens.cost.apportion import COMPUTE, KIND_NAMES, Apportioned, apportion
from raylens.cost.attribution import (
    DEFAULT_WORKLOAD,
    IDLE_KEY,
    UNALLOCATED,
    WorkloadClassifier,
    job_labels,
    job_workload,
)
from raylens.cost.budgets import Budget
from raylens.cost.catalog import HOURS_PER_MONTH
from raylens.cost.explain_log import ExplainLog
from raylens.cost.holdings import JobKey, Record
from raylens.cost.model import Allocation, JobInfo, NodeSpan, Observation
from raylens.cost.periods import PERIODS, boundaries, period_end, period_start
from raylens.cost.placement import place_allocations
from raylens.cost.pricing import GIB, SECONDS_PER_HOUR, NodePrice, NodePricer, node_matches
from raylens.cost.rates import Report, current_rates
from raylens.cost.state import EngineState, JobRecord, NodeRecord, PeriodRecord
from raylens.cost.steady import SteadyNode

# Re-exported: the collector and the tests import these from the engine.
__all__ = ["KIND_NAMES", "CostEngine", "ExplainLog", "Report", "allocation_total", "total_spend"]

log = logging.getLogger("raylens.cost")


class CostEngine:
    def __init__(
        self,
        config: CostConfig,
        pricer: NodePricer,
        budgets: Sequence[Budget] = (),
        state: EngineState | None = None,
        explain: ExplainLog | None = None,
        carry_over_steady_nodes: bool = True,
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
        self._last: tuple[Observation, Report] | None = None
        # Nodes whose holdings did not change since the last step (raylens.cost.steady); without it
        # every node is recomputed at every step (the tests compare the two).
        self._steady: dict[str, SteadyNode] | None = {} if carry_over_steady_nodes else None
        self.explain.settle = self._settle_explain

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
        placement = place_allocations(observation, nodes, jobs, self._previous, state)
        records = placement.by_node
        self._active_jobs = placement.active
        labels = self._update_jobs(observation, jobs, placement.names)
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
        report = current_rates(
            now, nodes, prices, rates, records, labels, alive_now, self._storage_rate, self._network_rates, self._steady
        )
        self._forget_old(now, nodes, jobs)
        self._last = (observation, report)
        return report

    def budget_spend(self, budget: Budget) -> float:
        period = self.state.periods.get(budget.period)
        return period.spend.get(budget.key, 0.0) if period else 0.0

    def period_bounds(self, period: str, now: float) -> tuple[float, float]:
        return period_start(period, now, self.zone), period_end(period, now, self.zone)

    # ------------------------------------------------------------------ preparation

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
                part = apportion(
                    sub_windows,
                    nodes,
                    rates,
                    records,
                    network,
                    self._storage_rate,
                    self.explain.record,
                    rate_time=now if last else None,
                    steady=self._steady,
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
                if self._steady is not None and node_id in self._steady:
                    self._steady.pop(node_id).settle()
                self.explain.nodes.pop(node_id, None)
        for job_id in list(state.jobs):
            if job_id in self._active_jobs:
                continue
            record = state.jobs[job_id]
            ended = record.end if record.end is not None else (None if job_id in jobs else record.last_seen)
            if ended is not None and now - ended > retention:
                del state.jobs[job_id]
                if job_id in self.explain.jobs and self._steady:
                    # Steady nodes hold that job's explain segments; the next step recomputes them.
                    self._settle_explain()
                    self._steady.clear()
                self.explain.jobs.pop(job_id, None)

    def _settle_explain(self) -> None:
        """Write what steady nodes extended lazily into the explain log (before it is read)."""
        for steady in (self._steady or {}).values():
            steady.settle()

    def _node_label_values(self, node: NodeSpan, price: NodePrice) -> list[str]:
        return [price.instance_type, price.market] + [
            node.labels.get(key, "") for key in self.config.export_node_labels
        ]

    def node_label_values(self, node_id: str) -> list[str]:
        record = self.state.nodes.get(node_id)
        return list(record.labels) if record is not None and record.labels else []


def total_spend(state: EngineState) -> float:
    """All dollars accounted so far (every node that is still in the state)."""
    return sum(sum(record.dollars) for record in state.nodes.values())


def allocation_total(state: EngineState, kinds: Iterable[str] = KIND_NAMES) -> float:
    wanted = set(kinds)
    return sum(value for key, value in state.allocation.items() if key[4] in wanted)
