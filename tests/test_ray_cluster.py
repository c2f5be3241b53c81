"""The ray collector, `raylens sd` and the exporter against a real Ray 2.60 head started here.

One head serves the module (ports outside Ray's worker range, 2 CPUs, a 100 MB object store,
stopped by PID); the kill/restart test starts its own. Workloads run as submitted jobs carrying
metadata: an actor pool, failing tasks, a crashing actor and objects put until the store spills
(tests/ray_workloads/mixed.py), a Ray Data pipeline, a failing and a stopped job.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from ray.job_submission import JobStatus, JobSubmissionClient
from ray_cluster import FAST_RAY_SOURCES, RayHead, running_ray_head
from test_ray_collector import promtool_problems, value, values

from raylens.collectors.base import ScrapeHealthCollector
from raylens.collectors.ray import RayCollector
from raylens.config import RayConfig
from services import running_exporter, running_prometheus

pytestmark = pytest.mark.slow

WORKLOADS = Path(__file__).parent / "ray_workloads"
FAILING_TASKS = 3
HELD_OBJECTS = 12  # mixed.py: 12 x 10 MB
OBJECT_BYTES = 10_000_000
METADATA = {"user": "alice", "project": "vision", "team": "ml"}

Samples = dict


def collect(collector: RayCollector) -> Samples:
    """A scrape right after every source was read afresh (the exporter reads in the background on
    its own schedule; tests that just changed the cluster must not wait for it)."""
    collector.source.refresh_now()  # type: ignore[attr-defined]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector]))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # the condition may raise until it holds
            last = error
        time.sleep(interval)
    raise AssertionError(f"{what} not reached after {timeout}s (last: {last!r})")


def healthy(samples: Samples) -> Samples | None:
    """The ray collector succeeded and the node table has answered (the exporter reads Ray in the
    background, so the first scrapes may come before the first answers)."""
    ok = values(samples, "raylens_scrape_collector_success", collector="ray") == [1.0]
    return samples if ok and values(samples, "raylens_ray_node_up") else None


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory):
    labels = {"ray.io/market-type": "spot", "ray.io/node-group": "cpu-head"}
    with running_ray_head(tmp_path_factory.mktemp("ray-head"), labels=labels) as started:
        yield started


@pytest.fixture(scope="module")
def collector(head: RayHead) -> RayCollector:
    """Reads the cluster by GCS address (the lookup path); the first scrape is the baseline."""
    config = RayConfig(address=head.address, cache_seconds=0, timeout_seconds=10, finished_grace_seconds=3600)
    ray_collector = RayCollector(config)
    baseline = collect(ray_collector)
    assert value(baseline, "raylens_scrape_collector_success", collector="ray") == 1, baseline
    return ray_collector


@dataclass
class Workloads:
    mixed: str
    data: str
    failing: str
    stopped: str
    job_ids: dict[str, str]
    held: Samples  # while mixed.py holds its objects
    after: Samples  # once every job has finished


def submit(client: JobSubmissionClient, entrypoint: str, workload: str, **metadata: str) -> str:
    return client.submit_job(
        entrypoint=entrypoint,
        runtime_env={"working_dir": str(WORKLOADS)},
        metadata={**METADATA, "workload": workload, **metadata},
    )


def wait_status(client: JobSubmissionClient, submission_id: str, status: JobStatus, timeout: float = 120) -> None:
    def reached() -> bool:
        current = client.get_job_status(submission_id)
        if current.is_terminal() and current != status:
            raise AssertionError(f"{submission_id} ended {current}:\n{client.get_job_logs(submission_id)[-3000:]}")
        return current == status

    wait_until(reached, timeout, f"{submission_id} {status}")


@pytest.fixture(scope="module")
def workloads(head: RayHead, collector: RayCollector, tmp_path_factory: pytest.TempPathFactory) -> Workloads:
    client = JobSubmissionClient(head.dashboard_url)
    release = tmp_path_factory.mktemp("release") / "go"
    python = sys.executable
    mixed = submit(client, f"{python} mixed.py {release} {FAILING_TASKS}", "mixed")
    failing = submit(client, f"{python} -c 'import sys; sys.exit(3)'", "broken", user="bob")
    stopped = submit(client, f"{python} -c 'import time; time.sleep(300)'", "sleeper")
    wait_status(client, failing, JobStatus.FAILED)
    wait_status(client, stopped, JobStatus.RUNNING)
    client.stop_job(stopped)
    wait_status(client, stopped, JobStatus.STOPPED)

    wait_until(lambda: "READY" in client.get_job_logs(mixed), 120, "mixed.py holding its objects")

    def spilled(samples: Samples) -> Samples | None:
        # The dashboard refreshes raylets' object-store stats every 15 s (NODE_STATS_UPDATE_INTERVAL_SECONDS).
        found = values(samples, "raylens_ray_object_store_spilled_objects_total")
        return samples if found and found[0] >= 2 else None

    held = wait_until(lambda: spilled(collect(collector)), 60, "spilling visible in the dashboard's node stats")
    assert isinstance(held, dict)
    release.touch()
    wait_status(client, mixed, JobStatus.SUCCEEDED)

    data = submit(client, f"{python} data_pipeline.py", "data")
    wait_status(client, data, JobStatus.SUCCEEDED, timeout=180)
    after = collect(collector)
    job_ids = {sid: client.get_job_info(sid).job_id or "" for sid in (mixed, failing, stopped, data)}
    return Workloads(mixed, data, failing, stopped, job_ids, held, after)


def test_jobs_carry_their_metadata_and_final_statuses(workloads: Workloads, head: RayHead) -> None:
    after = workloads.after
    assert value(after, "raylens_scrape_collector_success", collector="ray") == 1
    mixed_job = workloads.job_ids[workloads.mixed]
    info = value(
        after,
        "raylens_ray_job_info",
        job_id=mixed_job,
        submission_id=workloads.mixed,
        user="alice",
        project="vision",
        team="ml",
        workload="mixed",
        type="SUBMISSION",
    )
    assert info == 1
    [labels] = [
        dict(key[1])
        for key in after
        if key[0] == "raylens_ray_job_info" and dict(key[1])["submission_id"] == workloads.failing
    ]
    assert labels["user"] == "bob" and labels["entrypoint"].endswith("sys.exit(3)'")
    # While running, the job was RUNNING with a growing duration; finished, its status and times stay.
    assert value(workloads.held, "raylens_ray_job_status", submission_id=workloads.mixed) == 1
    assert value(workloads.held, "raylens_ray_job_status", submission_id=workloads.mixed, status="RUNNING") == 1
    assert value(after, "raylens_ray_job_status", submission_id=workloads.mixed, status="SUCCEEDED") == 1
    duration = value(after, "raylens_ray_job_duration_seconds", submission_id=workloads.mixed)
    end = value(after, "raylens_ray_job_end_time_seconds", submission_id=workloads.mixed)
    start = value(after, "raylens_ray_job_start_time_seconds", submission_id=workloads.mixed)
    assert 1 < duration < 300 and end - start == pytest.approx(duration, abs=0.01)
    # Counted once each, after the baseline scrape: 2 succeeded (mixed, data), 1 failed, 1 stopped.
    finished = {dict(k[1])["status"]: v for k, v in after.items() if k[0] == "raylens_ray_jobs_finished_total"}
    assert finished == {"SUCCEEDED": 2, "FAILED": 1, "STOPPED": 1}
    assert value(after, "raylens_ray_jobs", status="SUCCEEDED") == 2
    session = requests.get(f"{head.dashboard_url}/api/version", timeout=5).json()["session_name"]
    assert {dict(k[1])["SessionName"] for k in after if k[0].startswith("raylens_ray_job")} == {session}


def test_object_store_spills_restores_and_holds_primary_copies(workloads: Workloads) -> None:
    held = workloads.held
    capacity = value(held, "raylens_ray_object_store_capacity_bytes")
    used = value(held, "raylens_ray_object_store_used_bytes")
    assert capacity == 100_000_000
    assert 10e6 <= used <= capacity * 1.01
    assert value(held, "raylens_ray_object_store_pressure_ratio") == pytest.approx(used / capacity)
    # 120 MB held in a 100 MB store: at least two objects had to go to disk, and reading every
    # object back restored at least one.
    spilled = value(held, "raylens_ray_object_store_spilled_bytes_total")
    assert spilled >= 2 * OBJECT_BYTES
    assert value(held, "raylens_ray_object_store_spilled_objects_total") >= 2
    assert value(held, "raylens_ray_object_store_restored_bytes_total") >= OBJECT_BYTES
    assert value(held, "raylens_ray_object_store_primary_copies") >= HELD_OBJECTS
    assert 1 <= value(held, "raylens_ray_object_store_objects") <= HELD_OBJECTS + 5
    # Object store bytes as Ray's logical resource agree with the raylet's own count (same 5 s tick).
    assert value(workloads.after, "raylens_ray_object_store_spilled_bytes_total") >= spilled  # a counter


def test_tasks_and_actors_by_name_job_and_failure(workloads: Workloads) -> None:
    held, after = workloads.held, workloads.after
    mixed_job = workloads.job_ids[workloads.mixed]
    assert value(after, "raylens_ray_tasks", name="Squarer.square", state="FINISHED") == 20
    assert value(after, "raylens_ray_tasks", name="add_one", state="FINISHED") == 10
    assert value(after, "raylens_ray_tasks", name="fail_on_purpose", state="FAILED") == FAILING_TASKS
    assert value(after, "raylens_ray_task_failures_total", error_type="TASK_EXECUTION_EXCEPTION") == FAILING_TASKS
    assert value(after, "raylens_ray_task_failures_total", error_type="ACTOR_DIED") == 1  # Crasher.crash
    assert value(after, "raylens_ray_actor_failures_total", error_type="WORKER_DIED") == 1  # the crash
    assert value(held, "raylens_ray_actors", class_name="Squarer", state="ALIVE") == 2
    assert value(after, "raylens_ray_actors", class_name="Squarer", state="DEAD") == 2
    # Per job: 20 + 10 finished tasks, 2 actor inits, the crasher's init; the failures.
    assert value(after, "raylens_ray_job_tasks", job_id=mixed_job, state="FINISHED") >= 33
    assert value(after, "raylens_ray_job_tasks", job_id=mixed_job, state="FAILED") == FAILING_TASKS + 1
    assert value(held, "raylens_ray_job_actors", job_id=mixed_job, state="ALIVE") == 2
    # The two pool actors each hold 0.25 CPU while the job runs.
    assert value(held, "raylens_ray_job_resources_held", job_id=mixed_job, resource="CPU") == pytest.approx(0.5)
    data_job = workloads.job_ids[workloads.data]
    assert value(after, "raylens_ray_job_tasks", job_id=data_job, state="FINISHED") >= 1
    data_names = {dict(k[1])["name"] for k in after if k[0] == "raylens_ray_tasks"}
    assert any("ReadRange" in name for name in data_names), "\n".join(sorted(data_names))


def test_nodes_resources_and_identity(workloads: Workloads, head: RayHead) -> None:
    held = workloads.held
    [(labels, _)] = [(dict(k[1]), v) for k, v in held.items() if k[0] == "raylens_ray_node_info"]
    assert labels["market"] == "spot" and labels["node_type"] == "cpu-head" and labels["is_head"] == "true"
    assert labels["ip"] == labels["NodeAddress"] and labels["ip"]
    node = {"node_id": labels["node_id"], "ip": labels["ip"]}
    assert value(held, "raylens_ray_node_up", **node) == 1
    assert value(held, "raylens_ray_node_resource_capacity", resource="CPU", **node) == 2
    assert value(held, "raylens_ray_node_resource_capacity", resource="object_store_memory", **node) == 100_000_000
    assert 0 <= value(held, "raylens_ray_node_resource_used", resource="CPU", **node) <= 2
    assert value(held, "raylens_ray_nodes", state="ALIVE", node_type="cpu-head", market="spot") == 1
    assert value(held, "raylens_ray_node_start_time_seconds", **node) < time.time()
    assert values(workloads.after, "raylens_ray_node_joins_total") == []  # the head predates the baseline
    assert value(held, "raylens_ray_state_truncated_rows", source="tasks") == 0


def test_sd_lists_every_ray_metrics_endpoint(head: RayHead, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "raylens", "sd", f"--ray.address={head.address}", f"--output-dir={tmp_path}",
         "--exporter-port=9965", "--once"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    groups = json.loads((tmp_path / "ray.json").read_text())
    by_component = {group["labels"]["ray_component"]: group for group in groups}
    node_target = by_component["node"]["targets"][0]
    ip = node_target.rsplit(":", 1)[0]
    assert node_target == f"{ip}:{head.ports.metrics_export}"
    assert by_component["autoscaler"]["targets"] == [f"{ip}:{head.ports.autoscaler_metrics}"]
    assert by_component["dashboard"]["targets"] == [f"{ip}:{head.ports.dashboard_metrics}"]
    # Every target names its cluster: here the head's session (no cluster.name is configured).
    [exporters] = json.loads((tmp_path / "raylens.json").read_text())
    assert exporters["targets"] == [f"{ip}:9965"] and exporters["labels"]["raylens_role"] == "node"
    assert exporters["labels"]["cluster"].startswith("session_")
    assert {group["labels"]["cluster"] for group in groups} == {exporters["labels"]["cluster"]}


def test_prometheus_joins_our_series_with_rays_by_node(head: RayHead, tmp_path: Path) -> None:
    config = tmp_path / "raylens.yaml"
    config.write_text(json.dumps({"ray": {"address": head.dashboard_url, "sources": FAST_RAY_SOURCES}}))
    with (
        running_exporter(tmp_path, "--collectors=node,ray", f"--config.file={config}") as exporter,
        running_prometheus(tmp_path, [exporter.address]) as prometheus,
    ):
        # `raylens sd` writes the shipped config's targets/ray.json; tests scrape Ray on loopback
        # (it listens on 0.0.0.0 but advertises the host address, which a sandbox may not route).
        targets = prometheus.config_path.parent / "targets"
        subprocess.run(
            [sys.executable, "-m", "raylens", "sd", f"--ray.address={head.dashboard_url}",
             f"--output-dir={targets}", "--once"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        ray_file = targets / "ray.json"
        groups = json.loads(ray_file.read_text())
        for group in groups:
            group["targets"] = ["127.0.0.1:" + target.rsplit(":", 1)[1] for target in group["targets"]]
        ray_file.write_text(json.dumps(groups))

        prometheus.wait_for('up{job="ray",ray_component="node"} == 1', timeout=60)
        prometheus.wait_for('raylens_scrape_collector_success{collector="ray"} == 1', timeout=30)
        assert promtool_problems(exporter.scrape()) == ""
        hardware = prometheus.wait_for(
            "raylens_ray_node_up * on (ip, SessionName) group_left (RayNodeType) ray_node_cpu_count", timeout=60
        )
        assert hardware[0]["metric"]["RayNodeType"] == "head"
        core = prometheus.wait_for(
            "raylens_ray_object_store_capacity_bytes * on (NodeAddress, SessionName) group_left ()"
            " max by (NodeAddress, SessionName) (ray_object_store_available_memory)",
            timeout=60,
        )
        assert float(core[0]["value"][1]) > 0
        assert prometheus.query('{job="ray", __name__=~".+", otel_scope_name!=""}') == []  # dropped


def test_exporter_survives_a_head_kill_and_recovers(tmp_path: Path) -> None:
    with running_ray_head(tmp_path) as own_head:
        config = tmp_path / "raylens.yaml"
        fast = {"interval_seconds": 1}
        settings = {
            "address": own_head.address,
            "timeout_seconds": 3,
            "max_state_age_seconds": 10,
            "backoff_max_seconds": 2,
            "sources": {"nodes": fast, "version": fast, "node_details": fast, "jobs": fast},
        }
        config.write_text(json.dumps({"ray": settings}))
        with running_exporter(tmp_path, "--collectors=ray", f"--config.file={config}") as exporter:
            # The first scrapes may fail while the exporter imports Ray to ask the GCS for the dashboard.
            before = wait_until(lambda: healthy(parse(exporter.scrape())), 30, "first successful scrape")
            assert isinstance(before, dict)
            [old_session] = {dict(k[1])["SessionName"] for k in before if k[0] == "raylens_ray_node_up"}

            own_head.kill()
            slowest = 0.0

            def timed_scrape() -> Samples:
                nonlocal slowest
                started = time.monotonic()
                samples = parse(exporter.scrape())
                slowest = max(slowest, time.monotonic() - started)
                return samples

            down = wait_until(lambda: (s := timed_scrape()) and value(s, "raylens_ray_up") == 0 and s, 30, "ray_up 0")
            assert isinstance(down, dict)
            assert value(down, "raylens_scrape_collector_success", collector="ray") == 0
            # The last answers are served until they are ray.max_state_age_seconds old, then leave.
            gone = wait_until(
                lambda: (s := timed_scrape()) and not values(s, "raylens_ray_node_up") and s, 40, "aged out"
            )
            assert isinstance(gone, dict)
            assert slowest < 1.0, slowest  # scrapes never waited on the dead head
            assert exporter.process.popen is not None and exporter.process.popen.poll() is None

            own_head.start()

            def recovered() -> Samples | None:
                samples = healthy(parse(exporter.scrape()))
                return samples if samples and values(samples, "raylens_ray_node_joins_total") else None

            after = wait_until(recovered, 60, "exporter recovery")
            assert isinstance(after, dict)
            [new_session] = {dict(k[1])["SessionName"] for k in after if k[0] == "raylens_ray_node_up"}
            assert new_session != old_session
            assert value(after, "raylens_ray_node_joins_total", SessionName=new_session) == 1
            assert value(after, "raylens_ray_node_removals_total", SessionName=old_session, reason="vanished") == 1
            assert value(after, "raylens_ray_up") == 1
