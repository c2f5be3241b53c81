"""Cost: exact spend counters per node, job and attribution key, current rates, budgets and quotas.

Accounting happens off the scrape path: each new Ray snapshot (``raylens.ray.refresher``) becomes an
observation (``raylens.cost.ray_source``) as of the oldest answer it needs, the engine accounts spend
up to that instant from Ray's own timestamps, the state is saved atomically, and only then are the
metric families rebuilt and swapped in. A scrape serialises the last families built and never waits
for Ray or for the engine. If the state cannot be saved (disk full), the new counters are held back
until a save succeeds, so a restarted exporter never shows a counter lower than Prometheus saw; the
money keeps being accounted in memory meanwhile. All money is US dollars. Sample (labels shortened)::

    raylens_cost_node_dollars_total{cost_kind="compute",instance_type="g5.xlarge",market="spot",node_id="ab12"} 12.5
    raylens_cost_node_dollars_per_second{cost_kind="compute",instance_type="g5.xlarge",...} 0.000125
    raylens_cost_node_unpriced{node_id="cd34",reason="instance type unknown: ..."} 1.0
    raylens_cost_allocation_dollars_total{cost_kind="compute",project="vision",user="alice",...} 40.2
    raylens_cost_allocation_dollars_total{cost_kind="compute",project="__idle__",user="__idle__",...} 7.1
    raylens_cost_job_dollars_total{job_id="02000000",project="vision",user="alice",...} 3.2
    raylens_budget_spend_dollars{budget="vision",match="vision",period="month",scope="project"} 1234.5
    raylens_budget_period_start_timestamp_seconds{budget="vision",...} 1.7829e+09
    raylens_quota_usage{instance_type="",match="alice",quota="gpus-per-user",resource="gpus",scope="user"} 4.0
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from raylens.collectors.base import Collector, Section
from raylens.config import CostConfig, RaylensConfig
from raylens.cost.budgets import Budget
from raylens.cost.engine import KIND_NAMES, CostEngine, Report
from raylens.cost.model import Observation
from raylens.cost.periods import period_end
from raylens.cost.quotas import Quotas, evaluate_quotas
from raylens.cost.ray_source import REQUIRED_SOURCES, IncompleteSnapshot, observation_from_snapshot
from raylens.cost.state import EXPLAIN_FILE, STATE_FILE, write_json_atomically
from raylens.cost.state_health import StateHealth
from raylens.ray.snapshot import ClusterSnapshot
from raylens.recommend.node_workloads import node_workload_metrics  # issue #11

log = logging.getLogger("raylens.cost")

NODE_LABELS = ["node_id", "instance_type", "market"]
KEY_LABELS = ["user", "project", "team", "workload", "cost_kind"]
JOB_LABELS = ["job_id", "submission_id", "user", "project", "team"]
BUDGET_LABELS = ["budget", "scope", "match", "period"]
QUOTA_LABELS = ["quota", "scope", "match", "resource", "instance_type"]
EXPLAIN_SAVE_SECONDS = 60.0
_LABEL_CHARACTERS = re.compile(r"[^a-zA-Z0-9_]")


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one scrape's accounting.

    The engine builds and drops hundreds of thousands of tuples and lists per scrape on large
    clusters, which keeps triggering collections that rescan the whole live heap (about 40 % of the
    engine's time at 100k allocations, benchmarks/cost_scale.py). Nothing it builds forms a cycle,
    so reference counting frees it all anyway; the collector resumes right after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def exported_label_name(key: str) -> str:
    """``label_<key>`` with characters Prometheus does not allow replaced by ``_``."""
    return "label_" + _LABEL_CHARACTERS.sub("_", key)


@dataclass(frozen=True)
class _Published:
    """Metric families built after one accounting step, served as they are until the next."""

    spend: tuple[Metric, ...] = ()
    budgets: tuple[Metric, ...] = ()
    quotas: tuple[Metric, ...] = ()


class CostCollector(Collector):
    name = "cost"

    def __init__(
        self,
        config: CostConfig,
        engine: CostEngine,
        quotas: Quotas | None = None,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        state_health: StateHealth | None = None,
    ):
        self._config = config
        self._engine = engine
        self._quotas = quotas or Quotas((), {})
        self._state_dir = state_dir
        self._clock = clock
        self._wall_clock = wall_clock
        # Restores that failed at start-up and state files set aside (raylens.cost.state_health).
        self._state_health = state_health or StateHealth(state_dir)
        self._zone = ZoneInfo(config.timezone)
        self._lock = threading.Lock()
        self._report: Report | None = None
        self._explain_saved_at = float("-inf")
        self._explain_writer: threading.Thread | None = None
        self._kinds = [0]
        if config.volumes or config.spill_usd_per_gib_month:
            self._kinds.append(1)
        if config.egress_usd_per_gib:
            self._kinds.append(2)
        self._node_labels = NODE_LABELS + [exported_label_name(key) for key in config.export_node_labels]
        self._problem = ""
        self._save_errors = 0
        self._unsaved_since: float | None = None
        self._accounting_seconds = 0.0
        with self._lock:
            self._published = _Published(budgets=tuple(self._budget_metrics()))

    @property
    def engine(self) -> CostEngine:
        return self._engine

    def account(self, observation: Observation) -> bool:
        """Account spend up to ``observation.time``, save the state, then publish fresh metric
        families. Returns False when the observation is not newer than what is accounted already."""
        with self._lock, cyclic_gc_paused():
            accounted = self._engine.state.time
            if accounted is not None and observation.time <= accounted and self._report is not None:
                return False
            started = self._clock()
            report = self._engine.advance(observation)
            self._report = report
            try:
                self.save()
            except OSError as error:
                self._save_failed(error)
                return True  # counters held back: what is published stays what is on disk
            if self._unsaved_since is not None:
                held_back = round(report.time - self._unsaved_since)
                log.info("cost state saved again", extra={"held_back_seconds": held_back})
                self._unsaved_since = None
            self._published = _Published(
                # issue #11: + what each node's jobs hold by workload, the spot recommendation's evidence
                spend=(*self._spend_metrics(report), *node_workload_metrics(report)),
                budgets=tuple(self._budget_metrics()),
                quotas=tuple(self._quota_metrics(report)),
            )
            self._accounting_seconds = self._clock() - started
            self._problem = ""
            return True

    def account_snapshot(self, snapshot: ClusterSnapshot) -> None:
        """The refresher's subscriber: a new Ray snapshot in, spend accounted (never raises)."""
        as_of, accounted = snapshot.as_of(REQUIRED_SOURCES), self._engine.state.time
        if as_of is not None and accounted is not None and as_of <= accounted and self._report is not None:
            return  # only a source the engine does not need answered: nothing new to account
        try:
            self.account(observation_from_snapshot(snapshot))
        except IncompleteSnapshot as error:
            self._problem = str(error)
        except Exception as error:  # the engine must not take the refresher's thread down
            log.exception("cost accounting failed")
            self._problem = f"{type(error).__name__}: {error}"

    def _save_failed(self, error: OSError) -> None:
        self._save_errors += 1
        if self._unsaved_since is None:
            self._unsaved_since = self._engine.state.time
        self._problem = f"cannot save the cost state ({error.strerror or error}); new spend is held back until it can"
        log.error(
            "cost state not saved; counters held back",
            extra={"state_dir": str(self._state_dir), "error": str(error), "failures": self._save_errors},
        )

    def sections(self) -> Mapping[str, Section]:
        published = self._published  # one consistent set per scrape
        return {
            "spend": lambda: published.spend,
            "budgets": lambda: published.budgets,
            "quotas": lambda: published.quotas,
            "accounting": self._accounting_health,
            # Apart from the health series above: a section that raises contributes no series, and the
            # lag and the save errors are what an operator needs while accounting is stuck.
            "accounting_problem": self._accounting_problem,
            "state": self._state_health.metrics,
        }

    def _accounting_health(self) -> Iterator[Metric]:
        """How far behind accounting is, how long it takes, and failed saves."""
        accounted = self._engine.state.time
        if accounted is not None:
            yield GaugeMetricFamily(
                "raylens_cost_accounting_lag_seconds",
                "How far spend accounting is behind now: the age of the oldest Ray answer it needs (tasks "
                "by default, read every 15 s). Grows while Ray is unreachable; nothing is lost meanwhile.",
                value=max(0.0, self._wall_clock() - accounted),
            )
        yield GaugeMetricFamily(
            "raylens_cost_accounting_duration_seconds",
            "Time the last accounting step took (engine, state save, metric families), off the scrape path.",
            value=self._accounting_seconds,
        )
        yield CounterMetricFamily(
            "raylens_cost_state_save_errors",
            "Times the cost state could not be saved (disk full, permissions); while it fails, new spend "
            "is held back from the counters (not lost).",
            value=self._save_errors,
        )

    def _accounting_problem(self) -> Iterator[Metric]:
        """Fails the collector (success 0, one log line) while accounting cannot proceed."""
        if self._problem:
            raise RuntimeError(self._problem)
        yield from ()

    # ------------------------------------------------------------------ persistence

    def save(self, force_explain: bool = False) -> None:
        """Write the state (every accounting step, before its counters are shown) and the explain log
        (every minute).

        The explain log is only for ``raylens cost explain``; on large clusters it is megabytes, so it
        is copied here and written by a background thread, off the scrape's path (``force_explain``
        writes it before returning).
        """
        if self._state_dir is None:
            return
        write_json_atomically(self._state_dir / STATE_FILE, self._engine.state.to_json())
        now = self._clock()
        if not force_explain and now - self._explain_saved_at < EXPLAIN_SAVE_SECONDS:
            return
        writer = self._explain_writer
        if writer is not None and writer.is_alive():
            if not force_explain:
                return  # the previous write is still going; try again next scrape
            writer.join()
        self._explain_saved_at = now
        path, snapshot = self._state_dir / EXPLAIN_FILE, self._engine.explain.to_json(copy=True)

        def write() -> None:
            try:
                write_json_atomically(path, snapshot)
            except OSError as error:
                log.warning("cannot write the explain log", extra={"path": str(path), "error": str(error)})

        if force_explain:
            write()
            return
        self._explain_writer = threading.Thread(target=write, name="cost-explain", daemon=True)
        self._explain_writer.start()

    def flush(self) -> None:
        """Write the state and the explain log as they are now, waiting for any background write."""
        with self._lock:
            self.save(force_explain=True)

    # ------------------------------------------------------------------ metrics

    def _spend_metrics(self, report: Report) -> Iterator[Metric]:
        engine = self._engine
        state = engine.state
        retention = self._config.finished_retention_seconds
        now = report.time

        node_total = CounterMetricFamily(
            "raylens_cost_node_dollars",
            "US dollars this node has cost since it started, by cost kind: compute (instance price x time "
            "alive), storage (volumes, spill), network (egress).",
            labels=[*self._node_labels, "cost_kind"],
        )
        node_rate = GaugeMetricFamily(
            "raylens_cost_node_dollars_per_second",
            "What this node costs now, US dollars per second (x 3600 for the hourly price).",
            labels=[*self._node_labels, "cost_kind"],
        )
        for node_id, record in sorted(state.nodes.items()):
            if record.end is not None and now - record.end > retention:
                continue
            values = [node_id, *(record.labels or ["", ""]), *[""] * len(self._config.export_node_labels)]
            values = values[: len(self._node_labels)]
            rates = report.node_rates.get(node_id)
            for kind in self._kinds:
                node_total.add_metric([*values, KIND_NAMES[kind]], record.dollars[kind])
                if rates is not None:
                    node_rate.add_metric([*values, KIND_NAMES[kind]], rates[kind])
        yield node_total
        yield node_rate

        resource_rate = GaugeMetricFamily(
            "raylens_cost_node_resource_dollars_per_second",
            "What all of a node's CPUs, all its GPUs or all its memory cost now (the node price split); "
            "summed over resource it is the node's compute rate.",
            labels=["node_id", "resource"],
        )
        # Few labels on purpose: per-node series dominate exposition time on large clusters, and where
        # each fact came from is what `raylens cost explain node` prints.
        info = InfoMetricFamily(
            "raylens_cost_node",
            "How each alive node is priced (pricing_source: catalog, override, spot_estimate, resource_rates, "
            "unpriced); `raylens cost explain node ID` says where each fact came from.",
            labels=["node_id", "instance_type", "market", "cloud", "region", "pricing_source"],
        )
        unpriced = GaugeMetricFamily(
            "raylens_cost_node_unpriced",
            "1 for each alive node raylens cannot price (its cost is missing, not zero); see reason.",
            labels=["node_id", "instance_type", "reason"],
        )
        unpriced_count = 0
        for node_id in sorted(report.alive):
            price = report.prices[node_id]
            for resource, rate in zip(("cpu", "gpu", "memory"), price.component_dollars_per_second(), strict=True):
                resource_rate.add_metric([node_id, resource], rate)
            info.add_metric(
                [],
                {
                    "node_id": node_id,
                    "instance_type": price.instance_type,
                    "market": price.market,
                    "cloud": price.cloud,
                    "region": price.region,
                    "pricing_source": price.pricing_source,
                },
            )
            if not price.priced:
                unpriced_count += 1
                unpriced.add_metric([node_id, price.instance_type, price.unpriced_reason], 1.0)
        yield resource_rate
        yield info
        yield unpriced
        yield GaugeMetricFamily(
            "raylens_cost_unpriced_nodes",
            "Alive nodes raylens cannot price; their cost is missing from every total. Alert when above 0.",
            value=unpriced_count,
        )

        allocation_total = CounterMetricFamily(
            "raylens_cost_allocation_dollars",
            "US dollars spent, by who held the resources (job metadata; __unallocated__ when missing) and "
            "cost kind; __idle__ is what nobody held. Summed over all series it is the cluster's total.",
            labels=KEY_LABELS,
        )
        for key, dollars in sorted(state.allocation.items()):
            allocation_total.add_metric(list(key), dollars)
        yield allocation_total
        allocation_rate = GaugeMetricFamily(
            "raylens_cost_allocation_dollars_per_second",
            "Current spend rate by attribution key and cost kind, US dollars per second (__idle__ included).",
            labels=KEY_LABELS,
        )
        for key, rate in sorted(report.key_rates.items()):
            allocation_rate.add_metric(list(key), rate)
        yield allocation_rate

        job_total = CounterMetricFamily(
            "raylens_cost_job_dollars",
            "US dollars this Ray job's tasks and actors have cost, all kinds.",
            labels=JOB_LABELS,
        )
        job_rate = GaugeMetricFamily(
            "raylens_cost_job_dollars_per_second",
            "What this Ray job costs now, US dollars per second.",
            labels=JOB_LABELS,
        )
        job_info = InfoMetricFamily(
            "raylens_cost_job",
            "A job's workload type and whether it came from job metadata, was inferred from its tasks and "
            "actors (Serve, Train, Data), or is the default (tasks).",
            labels=["job_id", "submission_id", "workload", "workload_source"],
        )
        for job_id, record in sorted(state.jobs.items()):
            values = [job_id, record.submission_id, record.user, record.project, record.team]
            job_total.add_metric(values, record.dollars)
            if job_id in report.job_rates:
                job_rate.add_metric(values, report.job_rates[job_id])
            job_info.add_metric(
                [],
                {
                    "job_id": job_id,
                    "submission_id": record.submission_id,
                    "workload": record.workload,
                    "workload_source": record.workload_source,
                },
            )
        yield job_total
        yield job_rate
        yield job_info

        serve_total = CounterMetricFamily(
            "raylens_cost_serve_deployment_dollars",
            "US dollars the replicas of this Ray Serve deployment have cost.",
            labels=["application", "deployment"],
        )
        for key, dollars in sorted(state.serve.items()):
            serve_total.add_metric(list(key), dollars)
        yield serve_total
        serve_rate = GaugeMetricFamily(
            "raylens_cost_serve_deployment_dollars_per_second",
            "What this Ray Serve deployment's replicas cost now, US dollars per second.",
            labels=["application", "deployment"],
        )
        for key, rate in sorted(report.serve_rates.items()):
            serve_rate.add_metric(list(key), rate)
        yield serve_rate

        ratios = engine.pricer.catalog.split_ratios
        split = GaugeMetricFamily(
            "raylens_cost_split_ratio_to_memory",
            "Price weight of one vCPU or one GPU relative to one GiB of memory, used to split a whole-"
            "instance price when the catalog gives no split.",
            labels=["resource"],
        )
        split.add_metric(["cpu"], ratios.cpu_to_memory_gib)
        split.add_metric(["gpu"], ratios.gpu_to_memory_gib)
        yield split
        yield GaugeMetricFamily(
            "raylens_cost_accounted_until_timestamp_seconds",
            "Spend is accounted up to this time (the last observation of the cluster), Unix seconds.",
            value=state.time or 0.0,
        )

    def _budget_labels(self, budget: Budget) -> list[str]:
        return [budget.name, budget.scope, budget.match or "", budget.period]

    def _budget_metrics(self) -> Iterator[Metric]:
        engine = self._engine
        amount = GaugeMetricFamily(
            "raylens_budget_amount_dollars", "The budget for one period, US dollars.", labels=BUDGET_LABELS
        )
        spend = GaugeMetricFamily(
            "raylens_budget_spend_dollars",
            "Spend in the budget's scope since its current period started (period to date), US dollars; "
            "resets exactly at the period boundary in cost.timezone.",
            labels=BUDGET_LABELS,
        )
        start = GaugeMetricFamily(
            "raylens_budget_period_start_timestamp_seconds",
            "Start of the budget's current period (day, ISO week or month in cost.timezone), Unix seconds.",
            labels=BUDGET_LABELS,
        )
        end = GaugeMetricFamily(
            "raylens_budget_period_end_timestamp_seconds",
            "End of the budget's current period (the next period's start), Unix seconds.",
            labels=BUDGET_LABELS,
        )
        thresholds = GaugeMetricFamily(
            "raylens_budget_threshold_ratio",
            "Alert thresholds of the budget as a fraction of its amount (threshold label: the percent).",
            labels=[*BUDGET_LABELS, "threshold"],
        )
        # Called with self._lock held, right after accounting.
        periods = {name: record.start for name, record in engine.state.periods.items()}
        spent = {budget.name: engine.budget_spend(budget) for budget in engine.budgets}
        for budget in engine.budgets:
            labels = self._budget_labels(budget)
            amount.add_metric(labels, budget.amount_usd)
            if budget.period in periods:
                begins = periods[budget.period]
                spend.add_metric(labels, spent[budget.name])
                start.add_metric(labels, begins)
                end.add_metric(labels, period_end(budget.period, begins, self._zone))
            for percent in budget.thresholds_percent:
                thresholds.add_metric([*labels, f"{percent:g}"], percent / 100.0)
        yield from (amount, spend, start, end, thresholds)

    def _quota_metrics(self, report: Report) -> Iterator[Metric]:
        limit = GaugeMetricFamily(
            "raylens_quota_limit",
            "The quota's limit, published only while the quota is active (inside its time windows).",
            labels=QUOTA_LABELS,
        )
        usage = GaugeMetricFamily(
            "raylens_quota_usage",
            "What the quota's scope holds now: instances, GPUs or CPUs (Ray's logical resources).",
            labels=QUOTA_LABELS,
        )
        active = GaugeMetricFamily(
            "raylens_quota_active", "1 while the quota is inside one of its time windows, else 0.", labels=["quota"]
        )
        quotas = self._quotas.quotas
        holdings = report.holdings(with_nodes=any(q.resource == "instances" for q in quotas)) if quotas else []
        readings = evaluate_quotas(self._quotas, report.time, self._zone, report.capacities, holdings)
        seen_active: dict[str, bool] = {}
        for reading in readings:
            quota = reading.quota
            labels = [quota.name, quota.scope, reading.match, quota.resource, quota.instance_type or ""]
            usage.add_metric(labels, reading.usage)
            if reading.active:
                limit.add_metric(labels, quota.limit)
            seen_active[quota.name] = reading.active
        for quota in self._quotas.quotas:
            active.add_metric(
                [quota.name], 1.0 if seen_active.get(quota.name, quota.active(report.time, self._zone)) else 0.0
            )
        yield from (limit, usage, active)


def build_cost_collector(config: RaylensConfig) -> CostCollector:
    """The collector the exporter runs: files loaded and validated, state restored, and subscribed to
    the shared background reader of the Ray cluster."""
    from raylens.cluster import ClusterName
    from raylens.cost.loading import load_cost_setup
    from raylens.ray.state import shared_refresher

    # Budgets and quotas name clusters by cluster.name (or KubeRay's RayCluster name): a session
    # name, known only once Ray answers and new at every restart, cannot select them.
    cluster = ClusterName(config.cluster.name, config.ray.temp_dir)()
    setup = load_cost_setup(config.cost, cluster=cluster)
    collector = CostCollector(
        config.cost, setup.engine, quotas=setup.quotas, state_dir=setup.state_dir, state_health=setup.state_health
    )
    shared_refresher(config.ray).subscribe("cost", collector.account_snapshot)
    return collector
