"""The fault matrix of docs/reliability.md: real processes (a Ray head and worker node, a proxy in front
of the dashboard, the exporter, Prometheus), each started and stopped by PID. Every wait is a deadline
loop; the figures each test prints (``-s``) are the ones in docs/reliability.md.

The head is priced from the catalog (m5.xlarge, on demand, $0.192/h), so spend can be checked
against the node's own lifetime: whatever fault happened, ``raylens_cost_node_dollars_total`` must
equal the price times the time from the node's start to what is accounted.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from ray.job_submission import JobStatus, JobSubmissionClient
from ray_cluster import RayHead, kill_node, running_ray_head, short_temp_dir, start_worker_node

from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess
from services import RunningExporter, running_exporter, running_prometheus

pytestmark = pytest.mark.slow

HEAD_LABELS = {"raylens.io/instance-type": "m5.xlarge", "ray.io/market-type": "on-demand"}
WORKER_LABELS = {"raylens.io/instance-type": "m5.xlarge", "ray.io/market-type": "on-demand", "role": "worker"}
PRICE_PER_SECOND = {"m5.xlarge": 0.192 / 3600}
TIMEOUT_SECONDS = 2.0
# Every series carries `cluster` (and whatever else a deployment adds): match the cost collector's line.
COST_SUCCESS = re.compile(rb'^raylens_scrape_collector_success\{[^}]*collector="cost"[^}]*\} 1\.0$', re.MULTILINE)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    with running_ray_head(tmp_path_factory.mktemp("ray-head"), labels=HEAD_LABELS) as started:
        yield started


# --- helpers -----------------------------------------------------------------------------------


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def values(samples: Samples, metric: str, **labels: str) -> list[float]:
    return [
        found
        for (name, sample_labels), found in samples.items()
        if name == metric and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    ]


def one(samples: Samples, metric: str, **labels: str) -> float:
    found = values(samples, metric, **labels)
    assert len(found) == 1, (metric, labels, found)
    return found[0]


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (AssertionError, requests.RequestException, KeyError) as error:
            last = error
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


class TimedScrapes:
    """Scrapes one exporter and remembers how long each took."""

    def __init__(self, exporter: RunningExporter):
        self.exporter = exporter
        self.seconds: list[float] = []

    def __call__(self) -> Samples:
        started = time.monotonic()
        text = self.exporter.scrape()
        self.seconds.append(time.monotonic() - started)
        return parse(text)


def exporter_config(tmp_path: Path, dashboard_url: str, **ray: Any) -> Path:
    fast = {"interval_seconds": 1.0}
    settings = {
        "ray": {
            "address": dashboard_url,
            "timeout_seconds": TIMEOUT_SECONDS,
            "backoff_max_seconds": 2,
            "sources": dict.fromkeys(
                ("version", "nodes", "node_details", "resource_usage", "jobs", "actors", "tasks"), fast
            ),
            **ray,
        },
        "cost": {"state_dir": str(tmp_path / "cost-state")},
    }
    path = tmp_path / "raylens.yaml"
    path.write_text(json.dumps(settings))
    return path


def head_node_id(samples: Samples) -> str:
    [labels] = [dict(k[1]) for k in samples if k[0] == "raylens_ray_node_info" and dict(k[1])["is_head"] == "true"]
    return labels["node_id"]


def assert_spend_matches_lifetime(samples: Samples, node_id: str, instance_type: str) -> float:
    """Node spend equals its price times the time from its start to what is accounted (or its end)."""
    started = one(samples, "raylens_ray_node_start_time_seconds", node_id=node_id)
    ended = values(samples, "raylens_ray_node_end_time_seconds", node_id=node_id)
    accounted = one(samples, "raylens_cost_accounted_until_timestamp_seconds")
    until = min(accounted, ended[0]) if ended else accounted
    dollars = one(samples, "raylens_cost_node_dollars_total", node_id=node_id, cost_kind="compute")
    expected = PRICE_PER_SECOND[instance_type] * (until - started)
    assert dollars == pytest.approx(expected, rel=1e-6, abs=1e-9), (dollars, expected)
    return dollars


def costed(samples: Samples) -> Samples | None:
    ok = values(samples, "raylens_scrape_collector_success", collector="cost") == [1.0]
    return samples if ok and values(samples, "raylens_cost_node_dollars_total") else None


class Proxy:
    """tests/fault_proxy.py in front of the real dashboard, as its own process."""

    def __init__(self, target: str, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, str(Path(__file__).with_name("fault_proxy.py")), f"--listen=127.0.0.1:{self.port}"]
        argv.append(f"--target={target}")
        self.process = ManagedProcess("dashboard-proxy", argv, log_dir / "proxy.log", f"{self.url}/__proxy/stats")

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(timeout=20)

    def stop(self) -> None:
        self.process.stop()

    def delay(self, seconds: float) -> None:
        requests.get(f"{self.url}/__proxy/delay", params={"seconds": seconds}, timeout=5).raise_for_status()


@contextmanager
def running_proxy(head: RayHead, tmp_path: Path) -> Iterator[Proxy]:
    proxy = Proxy(head.dashboard_url, tmp_path)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


# --- the matrix --------------------------------------------------------------------------------


def test_dashboard_slow_then_down_then_back(head: RayHead, tmp_path: Path) -> None:
    with running_proxy(head, tmp_path) as proxy:
        config = exporter_config(tmp_path, proxy.url)
        with running_exporter(tmp_path, "--collectors=node,ray,cost", f"--config.file={config}") as exporter:
            scrape = TimedScrapes(exporter)
            first = wait_until(lambda: costed(scrape()), 60, "cost accounted")
            node_id = head_node_id(first)

            proxy.delay(TIMEOUT_SECONDS * 2)  # every answer now comes after the exporter's deadline
            scrape.seconds.clear()
            slow = wait_until(
                lambda: (s := scrape()) and one(s, "raylens_ray_state_source_success", source="nodes") == 0 and s,
                30,
                "slow dashboard noticed",
            )
            assert one(slow, "raylens_scrape_collector_success", collector="ray") == 0
            assert one(slow, "raylens_scrape_collector_success", collector="node") == 1
            assert values(slow, "raylens_ray_node_up", node_id=node_id) == [1.0]  # last answer still served
            slow_max = max(scrape.seconds)

            proxy.stop()  # now unreachable: connection refused
            down = wait_until(lambda: (s := scrape()) and one(s, "raylens_ray_up") == 0 and s, 30, "ray_up 0")
            assert one(down, "raylens_scrape_collector_success", collector="node") == 1
            proxy.start()
            back = wait_until(
                lambda: (
                    (s := costed(scrape()))
                    and one(s, "raylens_ray_up") == 1
                    and one(s, "raylens_scrape_collector_success", collector="ray") == 1
                    and s
                ),
                60,
                "recovered",
            )
            assert_spend_matches_lifetime(back, node_id, "m5.xlarge")
            print(
                f"\nfault dashboard-slow/down/back: {len(scrape.seconds)} scrapes, slowest {max(scrape.seconds):.3f}s"
                f" (while slow {slow_max:.3f}s), recovered; spend = price x lifetime"
            )
            assert max(scrape.seconds) < 1.0


def test_exporter_killed_mid_job_restarts_without_losing_spend(head: RayHead, tmp_path: Path) -> None:
    client = JobSubmissionClient(head.dashboard_url)
    entrypoint = (
        f'{sys.executable} -c "import ray, time; ray.init(); '
        'ray.get(ray.remote(num_cpus=1)(lambda: time.sleep(120)).remote())"'
    )
    submission = client.submit_job(entrypoint=entrypoint, metadata={"user": "alice", "project": "vision"})
    try:
        wait_until(lambda: client.get_job_status(submission) == JobStatus.RUNNING, 60, "job running")
        config = exporter_config(tmp_path, head.dashboard_url)
        args = ("--collectors=ray,cost", f"--config.file={config}")

        def job_dollars(samples: Samples) -> float:
            found = values(samples, "raylens_cost_job_dollars_total", submission_id=submission)
            return found[0] if found else 0.0

        with running_exporter(tmp_path, *args) as first:
            before = wait_until(
                lambda: (s := costed(parse(first.scrape()))) and job_dollars(s) > 0 and s, 60, "job costed"
            )
            assert first.process.popen is not None
            first.process.popen.kill()  # SIGKILL: no shutdown, no final save
            first.process.popen.wait(timeout=10)
        killed_at = one(before, "raylens_cost_accounted_until_timestamp_seconds")
        rate = one(before, "raylens_cost_job_dollars_per_second", submission_id=submission)
        time.sleep(3)
        with running_exporter(tmp_path, *args) as second:
            after = wait_until(
                lambda: (
                    (s := costed(parse(second.scrape())))
                    and one(s, "raylens_cost_accounted_until_timestamp_seconds") > killed_at + 5
                    and s
                ),
                60,
                "accounting resumed",
            )
        node_id = head_node_id(after)
        assert_spend_matches_lifetime(after, node_id, "m5.xlarge")
        assert one(after, "raylens_cost_node_dollars_total", node_id=node_id, cost_kind="compute") >= one(
            before, "raylens_cost_node_dollars_total", node_id=node_id, cost_kind="compute"
        )
        # The job held its CPU the whole time: its spend went on across the kill, nothing missing.
        gap = one(after, "raylens_cost_accounted_until_timestamp_seconds") - killed_at
        gained = job_dollars(after) - job_dollars(before)
        print(f"\nfault exporter kill -9: job spend {job_dollars(before):.6f} -> {job_dollars(after):.6f}"
              f" over {gap:.1f}s (rate x gap = {rate * gap:.6f})")  # fmt: skip
        assert gained == pytest.approx(rate * gap, rel=0.02)
    finally:
        client.stop_job(submission)


def test_a_node_dying_mid_scrape_is_costed_to_its_end(head: RayHead, tmp_path: Path) -> None:
    temp_dir = short_temp_dir()
    worker = start_worker_node(head, temp_dir, tmp_path, WORKER_LABELS)
    stop = threading.Event()
    failures: list[str] = []
    try:
        config = exporter_config(tmp_path, head.dashboard_url)
        with running_exporter(tmp_path, "--collectors=node,ray,cost", f"--config.file={config}") as exporter:
            scrape = TimedScrapes(exporter)

            def worker_row(samples: Samples) -> dict[str, str] | None:
                rows = [
                    dict(k[1]) for k in samples if k[0] == "raylens_ray_node_info" and dict(k[1])["is_head"] == "false"
                ]
                return rows[0] if rows else None

            alive = wait_until(lambda: (s := costed(scrape())) and worker_row(s) and s, 90, "worker node costed")
            node_id = worker_row(alive)["node_id"]  # type: ignore[index]

            def keep_scraping() -> None:
                while not stop.is_set():
                    try:
                        samples = scrape()
                        if values(samples, "raylens_scrape_collector_success", collector="ray") != [1.0]:
                            failures.append("ray collector failed")
                    except requests.RequestException as error:
                        failures.append(str(error))
                    time.sleep(0.1)

            scraper = threading.Thread(target=keep_scraping, daemon=True)
            scraper.start()
            kill_node(temp_dir, worker.pid)
            dead = wait_until(
                lambda: (
                    (s := costed(scrape()))
                    and values(s, "raylens_ray_node_up", node_id=node_id) == [0.0]
                    and one(s, "raylens_cost_accounted_until_timestamp_seconds")
                    > one(s, "raylens_ray_node_end_time_seconds", node_id=node_id)
                    and s
                ),
                120,
                "worker dead and accounted past its end",
            )
            stop.set()
            scraper.join(timeout=10)
        spend = assert_spend_matches_lifetime(dead, node_id, "m5.xlarge")
        assert one(dead, "raylens_ray_node_removals_total", reason="unexpected_termination") >= 1
        print(f"\nfault node death: {len(scrape.seconds)} scrapes, slowest {max(scrape.seconds):.3f}s, "
              f"{len(failures)} failed; dead node costed ${spend:.6f} = price x (end - start)")  # fmt: skip
        assert max(scrape.seconds) < 1.0
        assert failures == []
    finally:
        stop.set()
        kill_node(temp_dir, worker.pid)
        worker.stop()


def test_prometheus_restart_keeps_counters_continuous(head: RayHead, tmp_path: Path) -> None:
    config = exporter_config(tmp_path, head.dashboard_url)
    with (
        running_exporter(tmp_path, "--collectors=ray,cost", f"--config.file={config}") as exporter,
        running_prometheus(tmp_path, [exporter.address]) as prometheus,
    ):
        prometheus.wait_for('raylens_cost_node_dollars_total{cost_kind="compute"} > 0', timeout=60)
        prometheus.process.stop()
        time.sleep(3)
        prometheus.process.start()
        prometheus.process.wait_ready(timeout=30)
        restarted = time.time()
        wait_until(
            lambda: prometheus.query(f"timestamp(raylens_cost_accounted_until_timestamp_seconds) > {restarted + 3}"),
            60,
            "scraping again",
        )
        resets = prometheus.query('resets(raylens_cost_node_dollars_total{cost_kind="compute"}[5m])')
        assert resets and all(float(row["value"][1]) == 0 for row in resets), resets
        node = prometheus.query('raylens_cost_node_dollars_total{cost_kind="compute"}')[0]
        samples = parse(exporter.scrape())
    assert float(node["value"][1]) <= one(
        samples, "raylens_cost_node_dollars_total", node_id=node["metric"]["node_id"], cost_kind="compute"
    )
    print("\nfault Prometheus restart: 0 counter resets; the exporter kept counting")


def test_fifty_concurrent_scrapers_for_a_minute(head: RayHead, tmp_path: Path) -> None:
    config = exporter_config(tmp_path, head.dashboard_url)
    with running_exporter(tmp_path, "--collectors=node,ray,cost", f"--config.file={config}") as exporter:
        wait_until(lambda: costed(parse(exporter.scrape())), 60, "cost accounted")
        reads_before = one(parse(exporter.scrape()), "raylens_ray_state_fetches_total", source="tasks")
        deadline = time.monotonic() + 60
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def scraper() -> None:
            session = requests.Session()
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = session.get(f"{exporter.url}/metrics", timeout=10)
                    ok = response.status_code == 200 and COST_SUCCESS.search(response.content) is not None
                    problem = "" if ok else f"HTTP {response.status_code} or a failed collector"
                except requests.RequestException as error:
                    problem = str(error)
                with lock:
                    latencies.append(time.monotonic() - started)
                    if problem:
                        errors.append(problem)

        with ThreadPoolExecutor(max_workers=50) as pool:
            for _ in range(50):
                pool.submit(scraper)
        # Background reads give way to scrapes (raylens.scrape_priority) but never stop: read every
        # second, the task listing must have been read many times over the minute.
        reads = one(parse(exporter.scrape()), "raylens_ray_state_fetches_total", source="tasks") - reads_before
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\nfault 50 scrapers x 60 s: {len(latencies)} scrapes, {len(errors)} errors, "
          f"p50 {statistics.median(latencies):.3f}s p99 {p99:.3f}s max {latencies[-1]:.3f}s; "
          f"{reads:.0f} task listings read meanwhile")  # fmt: skip
    assert errors == []
    assert reads >= 10, reads
    assert p99 < 5.0  # a guard on a shared 2-core CI machine, not a timing claim (figures: docs/reliability.md)
