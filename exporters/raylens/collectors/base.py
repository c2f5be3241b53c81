"""The collector contract and the scrape wrapper that reports each collector's health.

A collector builds fresh metric families on every scrape from sources passed in at construction
(psutil, NVML, a Ray client, a clock), so tests hand it fakes or recorded fixtures. It is split into
named sections; a section that raises is logged and counted, and the other sections and collectors
still reach the scrape.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PrometheusCollector

log = logging.getLogger("raylens.scrape")

Section = Callable[[], Iterable[Metric]]


class Collector(abc.ABC):
    """One concern (node, GPU, Ray, cost). Subclasses name themselves and list their sections."""

    name: str

    @abc.abstractmethod
    def sections(self) -> Mapping[str, Section]:
        """Named parts of the collection, each run in isolation on every scrape."""


class ScrapeHealthCollector(PrometheusCollector):
    """Runs every collector on scrape and appends ``raylens_scrape_collector_*`` health series.

    Sample::

        raylens_scrape_collector_success{collector="node"} 1.0
        raylens_scrape_collector_duration_seconds{collector="node"} 0.0021
        raylens_scrape_collector_errors_total{collector="node"} 0.0
    """

    def __init__(self, collectors: Sequence[Collector], clock: Callable[[], float] = time.perf_counter):
        self._collectors = list(collectors)
        self._clock = clock
        self._errors = {collector.name: 0 for collector in self._collectors}
        # Concurrent scrapes (an HA Prometheus pair) must not lose error counts.
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        # Registering must not run the collectors (they may reach the network).
        return []

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "raylens_scrape_collector_success",
            "Whether every section of the collector succeeded on this scrape (1) or not (0).",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            "raylens_scrape_collector_duration_seconds",
            "Time the collector took on this scrape.",
            labels=["collector"],
        )
        for collector in self._collectors:
            started = self._clock()
            metrics, failed_sections = self._run(collector)
            elapsed = self._clock() - started
            yield from metrics
            success.add_metric([collector.name], 0.0 if failed_sections else 1.0)
            duration.add_metric([collector.name], elapsed)
        errors = CounterMetricFamily(
            "raylens_scrape_collector_errors",
            "Collector sections that failed, since the exporter started; see the logs for each fault.",
            labels=["collector"],
        )
        with self._lock:
            for name, count in self._errors.items():
                errors.add_metric([name], float(count))
        yield from (success, duration, errors)

    def _run(self, collector: Collector) -> tuple[list[Metric], list[str]]:
        metrics: list[Metric] = []
        failed: list[str] = []
        try:
            sections = collector.sections()
        except Exception as error:  # a broken collector must not break the others' scrape
            self._record_failure(collector.name, "sections", error)
            return [], ["sections"]
        for section_name, section in sections.items():
            try:
                # Materialise inside the guard so a failure half-way yields nothing partial.
                metrics.extend(list(section()))
            except Exception as error:
                self._record_failure(collector.name, section_name, error)
                failed.append(section_name)
        return metrics, failed

    def _record_failure(self, collector: str, section: str, error: BaseException) -> None:
        with self._lock:
            self._errors[collector] = self._errors.get(collector, 0) + 1
        log.warning(
            "collector section failed",
            extra={
                "collector": collector,
                "section": section,
                "error": f"{type(error).__name__}: {error}",
            },
        )
