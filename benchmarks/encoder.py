"""prometheus-client's encoders alone, on the exporter's own metric families (issue #14, item 6).

    python benchmarks/encoder.py                      # node collector, 2,000 rounds
    python benchmarks/encoder.py --collectors node gpu --rounds 500

The families are collected once and frozen, so each row times one step of a scrape by itself, in CPU
time per call (``time.process_time``, which other load on the machine barely moves): collecting,
text 0.0.4 encoding, OpenMetrics encoding, gzip. The last rows split OpenMetrics into its parts
(escaping label names and values, formatting floats) with cProfile, to show where an encoder of our
own could save time.
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


def per_call(function: Callable[[], Any], rounds: int) -> float:
    for _ in range(min(rounds // 10, 50)):
        function()
    started = time.process_time()
    for _ in range(rounds):
        function()
    return (time.process_time() - started) / rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collectors", nargs="+", default=["node"])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()

    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    from raylens.config import load_config
    from raylens.exporter import build_registry

    config = load_config(None)
    exporter = config.exporter.model_copy(update={"collectors": tuple(args.collectors)})
    registry = build_registry(config.model_copy(update={"exporter": exporter}))
    families = list(registry.collect())

    class Frozen:
        def collect(self) -> list:
            return families

    frozen = Frozen()
    text = generate_latest(frozen)  # type: ignore[arg-type]
    openmetrics = generate_openmetrics(frozen)  # type: ignore[arg-type]
    samples = sum(len(family.samples) for family in families)
    rows = [
        ("collect (registry.collect, all collectors)", per_call(lambda: list(registry.collect()), args.rounds)),
        ("encode text 0.0.4 (frozen families)", per_call(lambda: generate_latest(frozen), args.rounds)),  # type: ignore[arg-type]
        ("encode OpenMetrics (frozen families)", per_call(lambda: generate_openmetrics(frozen), args.rounds)),  # type: ignore[arg-type]
        ("gzip the OpenMetrics body", per_call(lambda: gzip.compress(openmetrics), args.rounds)),
    ]
    print(f"prometheus-client {importlib.metadata.version('prometheus-client')}")
    print(f"{samples} samples in {len(families)} families; text {len(text)} B, OpenMetrics {len(openmetrics)} B")
    print(f"{'step':<48} {'CPU per call':>13} {'per sample':>11}")
    for name, seconds in rows:
        print(f"{name:<48} {seconds * 1e3:10.3f} ms {seconds / samples * 1e6:8.2f} µs")
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(200):
        generate_openmetrics(frozen)  # type: ignore[arg-type]
    profile.disable()
    print("\nOpenMetrics encoder, top functions by own time (cProfile, 200 calls):")
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
