"""What the `cluster` label costs a scrape: one exposition of N samples, as served without the label
(the reference) and through ``ClusterLabelCollector`` (every sample copied with one more label).

    .venv/bin/python benchmarks/cluster_label.py [--samples 50000] [--runs 7]

Prints the median time of ``generate_latest`` for both, side by side.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from raylens.cluster import ClusterLabelCollector


class Synthetic:
    """Families shaped like the cost collector's: a few labels, many series per family."""

    def __init__(self, samples: int):
        self.samples = samples

    def collect(self) -> Iterator[Metric]:
        per_family = 1000
        for family in range(max(1, self.samples // per_family)):
            gauge = GaugeMetricFamily(f"raylens_bench_{family}", "Bench.", labels=["node_id", "job_id", "project"])
            for index in range(per_family):
                gauge.add_metric([f"n{index % 100}", f"j{index}", "vision"], float(index))
            yield gauge


def median_seconds(registry: CollectorRegistry, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    plain = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    plain.register(Synthetic(args.samples))
    labelled = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    labelled.register(ClusterLabelCollector([Synthetic(args.samples)], lambda: "prod-us-east"))
    reference, ours = median_seconds(plain, args.runs), median_seconds(labelled, args.runs)
    print(f"{args.samples} samples, median of {args.runs}")
    print(f"  without cluster label (reference)  {reference * 1000:8.1f} ms")
    print(f"  with cluster label                 {ours * 1000:8.1f} ms  ({(ours / reference - 1) * 100:+.0f} %)")


if __name__ == "__main__":
    main()
