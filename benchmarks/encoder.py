"""The exposition encoders alone: prometheus-client's beside raylens's cached renderer (issue #14, item 6).

    python benchmarks/encoder.py                      # node collector (2,000 rounds), then 100,000 series
    python benchmarks/encoder.py --collectors node gpu --rounds 500
    python benchmarks/encoder.py --series 0           # the node collector only
    python benchmarks/encoder.py --series 113000 --series-rounds 10

The families are collected once and frozen, so each row times one step of a scrape by itself, in CPU
time per call (``time.process_time``, which other load on the machine barely moves): collecting,
text 0.0.4 and OpenMetrics encoding, gzip. Each format is encoded three ways: prometheus-client's
``generate_latest``; ``raylens.web.exposition.ExpositionRenderer`` with a cold cache (a new renderer
every call: the exporter's first scrape); and the same renderer warm (every later scrape). Every
renderer's body is checked byte for byte against prometheus-client's before it is timed.

The second case is synthetic and sized like the cost engine at 10,000 Ray nodes (``--series``):
gauge families of 5,000 series each with three labels (a 56-hex-digit Ray node id, a project, a user).
The last rows split prometheus-client's OpenMetrics encoder into its parts with cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import importlib.metadata
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from raylens.web.exposition import ExpositionRenderer

SERIES_PER_FAMILY = 5_000


class Frozen:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def per_call(function: Callable[[], Any], rounds: int, warmup: int) -> float:
    for _ in range(warmup):
        function()
    started = time.process_time()
    for _ in range(rounds):
        function()
    return (time.process_time() - started) / rounds


Row = tuple[str, float, float | None]  # step, CPU per call, prometheus-client's for the same format


def format_rows(
    label: str, theirs: Callable[[Any], bytes], ours: Callable[..., bytes], frozen: Frozen, rounds: int, warmup: int
) -> list[Row]:
    expected = theirs(frozen)
    warm = ExpositionRenderer()
    assert ours(ExpositionRenderer(), frozen) == expected, "the cold render changed a byte"
    assert ours(warm, frozen) == expected and ours(warm, frozen) == expected, "the warm render changed a byte"
    baseline = per_call(lambda: theirs(frozen), rounds, warmup)
    return [
        (f"{label}: prometheus-client", baseline, None),
        (
            f"{label}: cached renderer, cold",
            per_call(lambda: ours(ExpositionRenderer(), frozen), rounds, warmup),
            baseline,
        ),
        (f"{label}: cached renderer, warm", per_call(lambda: ours(warm, frozen), rounds, warmup), baseline),
    ]


def encoder_rows(frozen: Frozen, rounds: int, warmup: int) -> list[Row]:
    return [
        *format_rows("text 0.0.4", generate_latest, ExpositionRenderer.text, frozen, rounds, warmup),
        *format_rows("OpenMetrics", generate_openmetrics, ExpositionRenderer.openmetrics, frozen, rounds, warmup),
    ]


def print_rows(samples: int, rows: list[Row]) -> None:
    print(f"{'step':<48} {'CPU per call':>13} {'per sample':>11} {'speed-up':>9}")
    for name, seconds, baseline in rows:
        speedup = f"{baseline / seconds:8.2f}x" if baseline else ""
        print(f"{name:<48} {seconds * 1e3:10.3f} ms {seconds / samples * 1e6:8.2f} µs {speedup:>9}")


def synthetic(series: int) -> list[Metric]:
    """Gauges shaped like the cost collector's: per node, project and user."""
    families = []
    for start in range(0, series, SERIES_PER_FAMILY):
        family = GaugeMetricFamily(
            f"raylens_synthetic_{start // SERIES_PER_FAMILY}_dollars",
            "A synthetic gauge, cost-collector shaped.",
            labels=["node_id", "project", "user"],
        )
        for index in range(start, min(start + SERIES_PER_FAMILY, series)):
            family.add_metric([f"{index * 7919:056x}", f"project-{index % 40}", f"user-{index % 300}"], index / 7.0)
        families.append(family)
    return families


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collectors", nargs="+", default=["node"])
    parser.add_argument("--rounds", type=int, default=2000, help="calls per row for the collectors' families")
    parser.add_argument("--series", type=int, default=100_000, help="synthetic series (0: skip that case)")
    parser.add_argument("--series-rounds", type=int, default=5, help="calls per row for the synthetic case")
    args = parser.parse_args()

    from raylens.config import load_config
    from raylens.exporter import build_registry

    config = load_config(None)
    exporter = config.exporter.model_copy(update={"collectors": tuple(args.collectors)})
    registry = build_registry(config.model_copy(update={"exporter": exporter}))
    families = list(registry.collect())
    frozen = Frozen(families)
    text = generate_latest(frozen)  # type: ignore[arg-type]
    openmetrics = generate_openmetrics(frozen)  # type: ignore[arg-type]
    samples = sum(len(family.samples) for family in families)
    warmup = min(args.rounds // 10, 50)
    collect = per_call(lambda: list(registry.collect()), args.rounds, warmup)
    rows: list[Row] = [
        ("collect (registry.collect, all collectors)", collect, None),
        *encoder_rows(frozen, args.rounds, warmup),
        ("gzip the OpenMetrics body", per_call(lambda: gzip.compress(openmetrics), args.rounds, warmup), None),
    ]
    print(f"prometheus-client {importlib.metadata.version('prometheus-client')}")
    print(f"\n{' '.join(args.collectors)}: {samples} samples in {len(families)} families; ", end="")
    print(f"text {len(text)} B, OpenMetrics {len(openmetrics)} B; {args.rounds} calls per row")
    print_rows(samples, rows)

    if args.series:
        big = Frozen(synthetic(args.series))
        big_text = generate_latest(big)  # type: ignore[arg-type]
        print(f"\nsynthetic: {args.series} series in {len(big.families)} gauge families, 3 labels each; ", end="")
        print(f"text {len(big_text) / 2**20:.1f} MiB; {args.series_rounds} calls per row")
        print_rows(args.series, encoder_rows(big, args.series_rounds, 1))

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(200):
        generate_openmetrics(frozen)  # type: ignore[arg-type]
    profile.disable()
    print("\nprometheus-client's OpenMetrics encoder, top functions by own time (cProfile, 200 calls):")
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
