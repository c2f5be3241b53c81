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

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from raylens.collectors.base import Collector, Section
from raylens.config import CostConfig, RaylensConfig
from raylens.cost.budget_metrics import BUDGET_LABELS, budget_families
from raylens.cost.engine import CostEngine, Report
from raylens.cost.model import Observation
from raylens.cost.quota_metrics import QUOTA_LABELS, quota_families
from raylens.cost.quotas import Quotas
from raylens.cost.ray_source import REQUIRED_SOURCES, IncompleteSnapshot, observation_from_snapshot
from raylens.cost.spend_metrics import (
    JOB_LABELS,
    KEY_LABELS,
    NODE_LABELS,
    exported_kinds,
    exported_label_name,
    node_label_names,
    spend_families,
)
from raylens.cost.state_health import StateHealth
from raylens.cost.state_writer import EXPLAIN_SAVE_SECONDS, StateWriter
from raylens.gc_pause import cyclic_gc_paused
from raylens.ray.snapshot import ClusterSnapshot
from raylens.recommend.node_workloads import node_workload_metrics  # issue #11

# This module stays the public import path of the cost collector; the families are built by
# raylens.cost.{spend,budget,quota}_metrics and the state is written by raylens.cost.state_writer.
__all__ = [
    "BUDGET_LABELS",
    "EXPLAIN_SAVE_SECONDS",
    "JOB_LABELS",
    "KEY_LABELS",
    "NODE_LABELS",
    "QUOTA_LABELS",
    "CostCollector",
    "build_cost_collector",
    "exported_label_name",
]

log = logging.getLogger("raylens.cost")


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
        self._writer = StateWriter(state_dir, engine, clock)
        self._kinds = exported_kinds(config)
        self._node_labels = node_label_names(config)
        self._problem = ""
        self._save_errors = 0
        self._unsaved_since: float | None = None
        self._accounting_seconds = 0.0
        with self._lock:
            self._published = _Published(budgets=tuple(budget_families(self._engine, self._zone)))

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
                spend=(
                    *spend_families(report, self._engine, self._config, self._kinds, self._node_labels),
                    *node_workload_metrics(report),
                ),
                budgets=tuple(budget_families(self._engine, self._zone)),
                quotas=tuple(quota_families(self._quotas, report, self._zone)),
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
        (every minute, in the background; ``force_explain`` writes it before returning). See
        ``raylens.cost.state_writer``."""
        self._writer.save(force_explain)

    def flush(self) -> None:
        """Write the state and the explain log as they are now, waiting for any background write."""
        with self._lock:
            self.save(force_explain=True)


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
