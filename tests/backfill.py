"""Prometheus holding history we script: OpenMetrics written here, blocks made by promtool's backfill.

``promtool tsdb create-blocks-from openmetrics`` turns the file into 2-hour TSDB blocks; a real
Prometheus then serves them from its data directory. Tests query the past with the ``@`` modifier
or an explicit evaluation time, so the wall clock does not matter.

A counter ``Series`` is defined by its spend rate over time (piecewise constant, US dollars per
hour) so that the analytic truth of any interval is an exact integral, and its samples are what
an exporter scraped every ``step`` seconds would have shown, including a reset to zero.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess
from raylens.stack.tools import find_tool
from services import RunningPrometheus


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    dollars_per_hour: float


@dataclass
class Series:
    """One series. ``kind`` counter: value = spend since it started (or since ``reset``); gauge:
    ``value`` from ``segments`` (the rate field is the gauge value) while a segment covers t."""

    metric: str
    labels: dict[str, str]
    segments: list[Segment]
    kind: str = "counter"
    # Counters keep being exported, flat, this long after their last segment (cost.finished_retention_seconds).
    retention: float = 3600.0

    @property
    def start(self) -> float:
        return min(segment.start for segment in self.segments)

    @property
    def end(self) -> float:
        return max(segment.end for segment in self.segments)

    def spend(self, begin: float, finish: float) -> float:
        """The analytic truth: dollars spent in [begin, finish)."""
        total = 0.0
        for segment in self.segments:
            overlap = min(finish, segment.end) - max(begin, segment.start)
            if overlap > 0:
                total += overlap * segment.dollars_per_hour / 3600
        return total

    def value(self, at: float, reset: float | None) -> float | None:
        if self.kind == "gauge":
            for segment in self.segments:
                if segment.start <= at < segment.end:
                    return segment.dollars_per_hour
            return None
        if at < self.start or at > self.end + self.retention:
            return None
        origin = reset if reset is not None and self.start < reset <= at else self.start
        return self.spend(origin, at)


@dataclass
class Scenario:
    series: list[Series]
    start: float
    end: float
    step: float = 120.0
    offset: float = 37.0  # samples fall between round boundaries, as real scrapes do
    reset: float | None = None  # every counter restarts from 0 here (an exporter restart that lost its state)
    target: dict[str, str] = field(default_factory=lambda: {"job": "raylens", "instance": "head:9965"})

    def sample_times(self) -> list[float]:
        times, t = [], self.start + self.offset
        while t < self.end:
            times.append(t)
            t += self.step
        return times

    def sample_lines(self) -> dict[tuple[str, str], list[str]]:
        """OpenMetrics sample lines per (family, type)."""
        families: dict[tuple[str, str], list[str]] = {}
        times = self.sample_times()
        for series in self.series:
            family = series.metric.removesuffix("_total") if series.kind == "counter" else series.metric
            lines = families.setdefault((family, series.kind), [])
            labels = {**self.target, **series.labels}
            text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
            for t in times:
                value = series.value(t, self.reset)
                if value is not None:
                    lines.append(f"{series.metric}{{{text}}} {value!r} {t:.3f}")
        return families

    def truth(self, begin: float, finish: float, **labels: str) -> float:
        """Dollars of the counters whose labels include ``labels`` (use metric= for the family)."""
        metric = labels.pop("metric", None)
        return sum(
            series.spend(begin, finish)
            for series in self.series
            if series.kind == "counter"
            and (metric is None or series.metric == metric)
            and all(series.labels.get(key, self.target.get(key)) == value for key, value in labels.items())
        )


def openmetrics(scenarios: Sequence[Scenario]) -> str:
    """One OpenMetrics text for all scenarios: each family once, as the format requires."""
    families: dict[tuple[str, str], list[str]] = {}
    for scenario in scenarios:
        for key, lines in scenario.sample_lines().items():
            families.setdefault(key, []).extend(lines)
    out: list[str] = []
    for (family, kind), lines in families.items():
        out += [f"# TYPE {family} {kind}", *lines]
    return "\n".join([*out, "# EOF"]) + "\n"


def create_blocks(text: str, work: Path) -> Path:
    promtool = find_tool("promtool")
    assert promtool, "promtool is not installed; run scripts/setup.sh"
    source = work / "backfill.om"
    source.write_text(text)
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(data)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return data


@contextmanager
def prometheus_with_history(
    work: Path,
    scenarios: Sequence[Scenario],
    web_config: Path | None = None,
    scheme: str = "http",
    ready_auth: tuple[str, str] | None = None,
) -> Iterator[RunningPrometheus]:
    """A real Prometheus serving the scenarios' samples (and scraping nothing)."""
    binary = find_tool("prometheus")
    assert binary, "prometheus is not installed; run scripts/setup.sh"
    work.mkdir(parents=True, exist_ok=True)
    data = create_blocks(openmetrics(scenarios), work)
    config = work / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1m}\nscrape_configs: []\n")
    listen = f"127.0.0.1:{free_port()}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        # Blocks of 2026 are "old" against the wall clock; nothing must age out while we query.
        "--storage.tsdb.retention.time=100y",
        f"--web.listen-address={listen}",
        "--log.level=warn",
    ]
    if web_config is not None:
        argv.append(f"--web.config.file={web_config}")
    process = ManagedProcess("prometheus", argv, work / "prometheus.log", f"{scheme}://{listen}/-/ready")
    process.start()
    try:
        process.wait_ready(timeout=60, auth=ready_auth)
        yield RunningPrometheus(process, f"{scheme}://{listen}", config)
    finally:
        process.stop()
