"""How long Prometheus takes to evaluate raylens's rules over a live-looking fleet.

    python benchmarks/rule_evaluation.py --nodes 1000 --minutes 8

Starts ``fleet.py serve`` (the fleet's current series in one scrape target, values moving with the
clock) and a real Prometheus that scrapes it every 15 s (``honor_labels``: each series keeps its own
node's ``instance`` and ``job``) and evaluates every recording and alerting rule group every 15 s.
After ``--minutes`` (the 5-minute windows fill up after five) it prints each group's
``prometheus_rule_group_last_duration_seconds`` (from Prometheus's own /metrics) and the worst value
read at each interval over the second half of the run against the target: each group
at most 1 % of its interval (150 ms at 15 s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prometheus_tsdb import serving_prometheus

from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess

REPO = Path(__file__).resolve().parents[1]
INTERVAL = 15
TARGET_SHARE = 0.01


def query(url: str, expr: str) -> list[dict]:
    body = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=60).json()
    return body["data"]["result"] if body.get("status") == "success" else []


def own_metrics(url: str) -> dict[str, dict[str, float]]:
    """Prometheus's own /metrics: rule group timings by group, and the head's series count."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {
        "prometheus_rule_group_last_duration_seconds",
        "prometheus_tsdb_head_series",
    }
    found: dict[str, dict[str, float]] = {name: {} for name in wanted}
    text = requests.get(f"{url}/metrics", timeout=60).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                found[sample.name][sample.labels.get("rule_group", "")] = sample.value
    return found


def slowest_rules(url: str, count: int = 10) -> list[tuple[str, float]]:
    """The rules that took longest at their last evaluation (``/api/v1/rules`` evaluationTime)."""
    groups = requests.get(f"{url}/api/v1/rules", timeout=60).json()["data"]["groups"]
    timed = [
        (rule.get("name", ""), float(rule.get("evaluationTime", 0.0))) for group in groups for rule in group["rules"]
    ]
    return sorted(timed, key=lambda pair: -pair[1])[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        port = free_port()
        argv = [sys.executable, str(REPO / "benchmarks" / "fleet.py"), "serve", f"--nodes={args.nodes}",
                f"--port={port}", f"--refresh={INTERVAL}"]  # fmt: skip
        fleet = ManagedProcess("fleet", argv, work / "fleet.log", f"http://127.0.0.1:{port}/healthz")
        fleet.start()
        try:
            fleet.wait_ready(timeout=900)
            config = {
                "global": {"scrape_interval": f"{INTERVAL}s", "evaluation_interval": f"{INTERVAL}s"},
                "rule_files": [str(REPO / "recording-rules" / "*.yml"), str(REPO / "alerting-rules" / "*.yml")],
                "scrape_configs": [
                    {
                        "job_name": "fleet",
                        "honor_labels": True,
                        "scrape_timeout": f"{INTERVAL - 1}s",
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    }
                ],
            }
            with serving_prometheus(work / "data", work / "prometheus", extra=config) as url:
                started = time.monotonic()
                worst: dict[str, float] = {}
                while time.monotonic() - started < args.minutes * 60:
                    time.sleep(INTERVAL)
                    scraped = query(url, 'scrape_samples_scraped{job="fleet"}')
                    samples = scraped[0]["value"][1] if scraped else "none yet"
                    print(f"rules: {time.monotonic() - started:.0f} s, samples per scrape {samples}", flush=True)
                    if time.monotonic() - started > args.minutes * 30:  # the second half: windows filled
                        for group, seconds in own_metrics(url)["prometheus_rule_group_last_duration_seconds"].items():
                            worst[group] = max(worst.get(group, 0.0), seconds)
                own = own_metrics(url)
                slowest = slowest_rules(url)
                scrape = query(url, 'scrape_duration_seconds{job="fleet"}')
        finally:
            fleet.stop()
    rows = sorted(own["prometheus_rule_group_last_duration_seconds"].items(), key=lambda row: -row[1])
    limit = INTERVAL * TARGET_SHARE
    print(f"{'rule group':<60} {'last s':>8} {'share':>7} {'worst s':>8}")
    for group, seconds in rows:
        flag = " MISS" if max(seconds, worst.get(group, 0.0)) > limit else ""
        path = Path(group.split(";")[0])
        name = f"{path.parent.name}/{path.name};{group.split(';')[-1]}"
        print(f"{name:<60} {seconds:8.4f} {seconds / INTERVAL:7.2%} {worst.get(group, 0.0):8.4f}{flag}")
    within = sum(1 for group, seconds in rows if max(seconds, worst.get(group, 0.0)) <= limit)
    print(f"groups within {TARGET_SHARE:.0%} of {INTERVAL} s: {within}/{len(rows)}")
    head = own["prometheus_tsdb_head_series"].get("", 0.0)
    print(f"head series {head:,.0f}; fleet scrape {scrape[0]['value'][1] if scrape else '?'} s")
    print("slowest rules at their last evaluation:")
    for name, seconds in slowest:
        print(f"  {name:<70} {seconds:8.4f} s")
    print(f"load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"nodes": args.nodes, "last": rows, "worst": worst, "head_series": head, "slowest": slowest}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
