"""The ``recommend`` collector: savings recommendations as metrics, for Grafana and the alerting rules.

It runs the same engine as ``raylens recommend`` against the Prometheus in the ``prometheus`` section,
every ``recommendations.refresh_seconds``, in a background thread, and serves the last results from
memory, so a scrape never waits for Prometheus. Sample::

    raylens_recommendation_savings_dollars_per_hour{kind="spot",target="ab12",target_type="node"} 0.446
    raylens_recommendation_info{action="Run this node type on spot ...",alternative="m5.4xlarge spot",
      instance_type="m5.4xlarge",kind="spot",summary="On-demand node ab12 ...",target="ab12",target_type="node"} 1.0
    raylens_recommendations{kind="spot"} 3.0
    raylens_recommendation_last_success_timestamp_seconds 1.7829e+09
    raylens_recommendation_refresh_errors_total 0.0

A failed refresh (Prometheus down, a query rejected) is counted, logged and retried at the next
interval; the last good results stay up to three intervals old and then disappear, so alerts never
fire on stale figures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from raylens.collectors.base import Collector, Section
from raylens.config import RECOMMENDATION_KINDS, RaylensConfig
from raylens.prometheus_api import PrometheusApi
from raylens.recommend.engine import Outcome, run_recommendations
from raylens.recommend.model import Recommendation

log = logging.getLogger("raylens.recommend")
STALE_AFTER_INTERVALS = 3
RECOMMENDATION_LABELS = ["kind", "target", "target_type"]


class RecommendationsCollector(Collector):
    name = "recommend"

    def __init__(
        self,
        config: RaylensConfig,
        run: Callable[[], Outcome],
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ):
        self._config = config
        self._run = run
        self._clock = clock
        self._background = background
        self._lock = threading.Lock()
        # kind -> (when computed, recommendations, how many were found before the cut)
        self._results: dict[str, tuple[float, list[Recommendation], int]] = {}
        self._last_success = 0.0
        self._duration = 0.0
        self._errors = 0
        self._kind_errors: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def refresh(self) -> None:
        """Run the engine once; failures are counted and logged, never raised."""
        try:
            outcome = self._run()
        except Exception as error:  # Prometheus down, config files gone: try again next interval
            with self._lock:
                self._errors += 1
            log.warning("recommendations refresh failed", extra={"error": f"{type(error).__name__}: {error}"})
            return
        now = self._clock()
        with self._lock:
            self._duration = outcome.seconds
            for kind in outcome.errors:
                self._kind_errors[kind] = self._kind_errors.get(kind, 0) + 1
            # A kind that failed this time keeps its last results until they go stale.
            for kind, items in outcome.recommendations.items():
                self._results[kind] = (now, items, outcome.found.get(kind, len(items)))
            if not outcome.errors:
                self._last_success = now

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._config.recommendations.refresh_seconds)

    def stop(self) -> None:
        self._stop.set()

    def sections(self) -> Mapping[str, Section]:
        if self._background and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="recommend-refresh", daemon=True)
            self._thread.start()
        return {"status": self._status, "recommendations": self._recommendations}

    def _status(self) -> Iterator[Metric]:
        with self._lock:
            errors, kind_errors, last = self._errors, dict(self._kind_errors), self._last_success
            seconds = self._duration
        counter = CounterMetricFamily(
            "raylens_recommendation_refresh_errors",
            "Refreshes of the recommendations that failed (kind: the kind whose queries failed, or all when "
            "Prometheus could not be read at all); each is also logged.",
            labels=["kind"],
        )
        counter.add_metric(["all"], float(errors))
        for kind in RECOMMENDATION_KINDS:
            counter.add_metric([kind], float(kind_errors.get(kind, 0)))
        yield counter
        yield GaugeMetricFamily(
            "raylens_recommendation_last_success_timestamp_seconds",
            "When every kind of recommendation was last computed without error, Unix seconds (0: never).",
            value=last,
        )
        yield GaugeMetricFamily(
            "raylens_recommendation_refresh_duration_seconds",
            "How long the last refresh took (its Prometheus queries).",
            value=seconds,
        )

    def _recommendations(self) -> Iterator[Metric]:
        with self._lock:
            results = dict(self._results)
        stale_after = STALE_AFTER_INTERVALS * self._config.recommendations.refresh_seconds
        now = self._clock()
        fresh = {kind: result for kind, result in results.items() if now - result[0] <= stale_after}
        if results and not fresh:
            raise RuntimeError(f"no successful refresh for over {stale_after:.0f} s; recommendations withheld")
        savings = GaugeMetricFamily(
            "raylens_recommendation_savings_dollars_per_hour",
            "Estimated saving of acting on a recommendation, US dollars per hour (x 730 per month): the top "
            "recommendations.top_per_kind per kind. raylens_recommendation_info says what to do.",
            labels=RECOMMENDATION_LABELS,
        )
        info = InfoMetricFamily(
            "raylens_recommendation",
            "What a recommendation says (summary with its figures) and asks (action); `raylens recommend` shows "
            "its evidence as PromQL.",
            labels=[*RECOMMENDATION_LABELS, "summary", "action", "instance_type", "alternative"],
        )
        found = GaugeMetricFamily(
            "raylens_recommendations",
            "Recommendations found per kind at the last refresh, before the top-N cut and the minimum saving.",
            labels=["kind"],
        )
        for kind in self._config.recommendations.kinds:
            if kind not in fresh:
                continue
            _, items, count = fresh[kind]
            found.add_metric([kind], float(count))
            for item in items:
                labels = [item.kind, item.target, item.target_type]
                savings.add_metric(labels, item.savings_dollars_per_hour)
                info.add_metric(
                    [],
                    {
                        "kind": item.kind,
                        "target": item.target,
                        "target_type": item.target_type,
                        "summary": item.summary,
                        "action": item.action,
                        "instance_type": item.instance_type,
                        "alternative": item.alternative,
                    },
                )
        yield from (savings, info, found)


def build_recommend_collector(config: RaylensConfig) -> RecommendationsCollector:
    """Files (pricing, secrets) are read now, so a bad config stops the exporter at start-up."""
    from raylens.cost.catalog import load_catalog

    api = PrometheusApi(config.prometheus)
    catalog = load_catalog(config.cost.pricing_files)
    return RecommendationsCollector(config, lambda: run_recommendations(api, config, catalog=catalog))
