"""`raylens logs` and workspace events against a real two-node Ray 2.60 cluster started here.

One head and one second node (own temp dir and ports, killed by PID at the end) serve the module.
Jobs print tokens from a task pinned to the second node and from their driver; the real CLI must
find them on the right node and component, follow new lines, and emit JSON valid against its
schema. The ray collector with an events recorder must turn job success and failure and the second
node's death into events, counted once and never repeated after a restart.
"""

from __future__ import annotations

import gzip
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable

import jsonschema
import pytest
import requests
from prometheus_client import CollectorRegistry
from ray.job_submission import JobStatus, JobSubmissionClient
from ray_cluster import running_ray_head
from ray_worker import running_ray_worker

from raylens.collectors.base import ScrapeHealthCollector
from raylens.collectors.ray import RayCollector
from raylens.config import EventsConfig, RayConfig
from raylens.ray.event_log import EventRecorder
from raylens.ray.serve_status import fetch_serve_status
from services import REPO

pytestmark = pytest.mark.slow

WORKLOAD = REPO / "tests" / "ray_workloads" / "log_lines.py"
SCHEMA = json.loads((REPO / "schemas" / "raylens-log-record.schema.json").read_text())


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 1.0) -> object:
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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("logs-events")
    with running_ray_head(tmp) as head, running_ray_worker(head, tmp) as second:
        yield head, second, tmp


def submit(head, token: str, resource: str = "", exit_code: int = 0, wait: bool = True) -> str:
    client = JobSubmissionClient(head.dashboard_url)
    entrypoint = f"{sys.executable} {WORKLOAD} --token={token} --exit-code={exit_code}"
    if resource:
        entrypoint += f" --resource={resource}"
    submission_id = client.submit_job(entrypoint=entrypoint, metadata={"user": "alice"})
    if wait:
        wait_until(lambda: client.get_job_status(submission_id).is_terminal(), 120, f"job {submission_id} done")
        expected = JobStatus.SUCCEEDED if exit_code == 0 else JobStatus.FAILED
        assert client.get_job_status(submission_id) == expected, client.get_job_logs(submission_id)
    return submission_id


def raylens_logs(head, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "raylens", "logs", f"--ray.address={head.dashboard_url}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_grep_finds_a_printed_line_on_the_right_node_and_component(cluster) -> None:
    head, second, tmp = cluster
    token = f"grep-{secrets.token_hex(4)}"
    submission_id = submit(head, token, second.resource)
    result = raylens_logs(head, f"--grep={token}", "--format=json", f"--output={tmp / 'grep.jsonl.gz'}")
    assert result.returncode == 0, result.stderr
    with gzip.open(tmp / "grep.jsonl.gz", "rt") as exported:
        lines = [json.loads(line) for line in exported.read().splitlines()]
    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert all(not list(validator.iter_errors(line)) for line in lines), lines
    task_lines = [line for line in lines if line["message"] == f"task says {token}" and line["component"] == "worker"]
    assert len(task_lines) == 1, lines
    assert task_lines[0]["node_id"] == second.node_id  # the task ran on the second node
    assert task_lines[0]["file"].endswith(".out") and task_lines[0]["task_name"] == "say"
    assert task_lines[0]["job_id"] and task_lines[0]["worker_id"]
    driver_lines = [
        line for line in lines if line["component"] == "job_driver" and f"driver says {token}" in line["message"]
    ]
    assert len(driver_lines) == 1 and driver_lines[0]["submission_id"] == submission_id
    assert driver_lines[0]["node_id"] != second.node_id  # submitted jobs' drivers run on the head

    # The same search narrowed to the job, in text form, and to a node that never ran it.
    text = raylens_logs(head, f"--grep={token}", f"--job={submission_id}", "--component=worker")
    assert text.returncode == 0 and f"task says {token}" in text.stdout and "job_driver" not in text.stdout
    elsewhere = raylens_logs(head, f"--grep={token}", f"--node={head_node_id(head, second)}", "--component=worker")
    assert elsewhere.returncode == 0 and elsewhere.stdout == ""
    actors = requests.get(
        f"{head.dashboard_url}/api/v0/actors",
        params={"detail": 1, "filter_keys": "class_name", "filter_predicates": "=", "filter_values": "Speaker"},
        timeout=30,
    ).json()["data"]["result"]["result"]
    speaker = next(row["actor_id"] for row in actors if row["job_id"] == task_lines[0]["job_id"])
    by_actor = raylens_logs(head, f"--actor={speaker}", f"--grep={token}")
    assert by_actor.returncode == 0 and by_actor.stdout.count(token) == 1 and f"actor says {token}" in by_actor.stdout
    listing = raylens_logs(head, "--list", f"--node={second.node_id[:12]}")
    assert "raylet" in listing.stdout and second.node_id[:8] in listing.stdout
    bad = raylens_logs(head, "--grep=(unclosed")
    assert bad.returncode == 2 and "--grep" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def head_node_id(head, second) -> str:
    rows = JobSubmissionClient(head.dashboard_url)._do_request("GET", "/api/v0/nodes").json()
    return next(row["node_id"] for row in rows["data"]["result"]["result"] if row["node_id"] != second.node_id)


def test_follow_shows_a_line_printed_after_it_started(cluster) -> None:
    head, second, tmp = cluster
    token = f"follow-{secrets.token_hex(4)}"
    out = (tmp / "follow.out").open("w")
    argv = [
        sys.executable,
        "-m",
        "raylens",
        "logs",
        f"--ray.address={head.dashboard_url}",
        "--follow",
        f"--grep={token}",
        "--component=worker",
        "--component=job_driver",
        "--stop-after=150s",
    ]
    follower = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)  # let it list and open its streams: the token must come after it started
        assert follower.poll() is None, (tmp / "follow.out").read_text()
        started = time.time()
        submit(head, token, second.resource)

        def followed() -> list[str]:
            lines = (tmp / "follow.out").read_text().splitlines()
            from_worker = [line for line in lines if line.split()[1:2] == ["worker"] and f"task says {token}" in line]
            from_driver = [
                line for line in lines if line.split()[1:2] == ["job_driver"] and f"driver says {token}" in line
            ]
            return from_worker + from_driver if from_worker and from_driver else []

        worker_line, *_ = wait_until(followed, 90, "followed lines from the worker and the driver")
        print(f"follow: worker and driver lines {time.time() - started:.1f}s after submitting")
        # `<ip> worker worker-<id>-<job>-<pid>.out: task says …`: the new worker's file was picked up.
        assert worker_line.split()[2].startswith("worker-") and worker_line.split()[2].endswith(".out:")
    finally:
        follower.terminate()
        follower.wait(20)
        out.close()


def collect(collector: RayCollector) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector]))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "raylens_ray_events_total"
    }


def events_count(samples: dict, kind: str, cause: str | None = None) -> float:
    return sum(
        value
        for (_, labels), value in samples.items()
        if dict(labels)["kind"] == kind and (cause is None or dict(labels)["cause"] == cause)
    )


def test_events_for_jobs_and_a_killed_node_once_across_restarts(cluster) -> None:
    head, second, tmp = cluster
    log_file = tmp / "events.jsonl"

    def new_collector() -> tuple[RayCollector, EventRecorder]:
        config = RayConfig(address=head.dashboard_url, cache_seconds=0, timeout_seconds=20, object_store=False)
        events = EventRecorder(EventsConfig(log_file=log_file))
        return RayCollector(config, events=events), events  # its own background refresher

    def lines() -> list[dict]:
        return [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.exists() else []

    collector, recorder = new_collector()
    wait_until(lambda: collector.source.current() is not None, 60, "first snapshot")
    collect(collector)  # baseline: what ran before is history
    assert lines() == []
    good = submit(head, f"ok-{secrets.token_hex(3)}")
    bad = submit(head, f"bad-{secrets.token_hex(3)}", exit_code=3)

    def job_events() -> dict:
        samples = collect(collector)
        kinds = {(line["kind"], line["details"].get("submission_id")) for line in lines()}
        wanted = {("job_started", good), ("job_succeeded", good), ("job_started", bad), ("job_failed", bad)}
        return samples if wanted <= kinds else {}

    samples = wait_until(job_events, 60, "job events")
    assert events_count(samples, "job_failed") == 1 and events_count(samples, "job_succeeded") == 1
    failed = next(line for line in lines() if line["kind"] == "job_failed")
    assert failed["severity"] == "warning" and failed["details"]["metadata_user"] == "alice"

    second.kill()  # SIGKILL its raylet, by PID
    killed_at = time.time()

    def node_died() -> dict:
        samples = collect(collector)
        return samples if any(line["kind"] == "node_died" for line in lines()) else {}

    samples = wait_until(node_died, 120, "node_died event")
    print(f"node_died event {time.time() - killed_at:.1f}s after the kill")
    died = [line for line in lines() if line["kind"] == "node_died"]
    assert len(died) == 1, died
    print("node_died line:", json.dumps(died[0], sort_keys=True))
    assert died[0]["details"]["node_id"] == second.node_id
    assert died[0]["cause"] == "unexpected_termination"
    assert "health check" in died[0]["details"]["state_message"] or "Unexpected" in died[0]["message"]
    assert events_count(samples, "node_died", "unexpected_termination") == 1
    for _ in range(3):
        samples = collect(collector)
    assert events_count(samples, "node_died") == 1 and len([x for x in lines() if x["kind"] == "node_died"]) == 1

    # An exporter restart: a new recorder over the same files repeats nothing.
    before = lines()
    collector.source.stop()  # the old exporter is gone
    recorder.close()
    restarted, _ = new_collector()
    for _ in range(3):
        samples = collect(restarted)
    assert lines() == before
    assert all(value == 0 for value in samples.values())  # counters restart; nothing new was counted

    # The Serve status source answers on a cluster without Serve: no applications.
    assert dict(fetch_serve_status(head.dashboard_url, 10).applications) == {}
