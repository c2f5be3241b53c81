"""The cost collector on a real local Ray cluster: jobs submitted with metadata show up with cost that a
real Prometheus can sum by project, and the books balance (attributed + idle = node cost)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient
from ray_cluster import FAST_RAY_SOURCES, running_ray_head

from services import running_exporter, running_prometheus

pytestmark = pytest.mark.slow

JOB = Path(__file__).parent / "fixtures" / "cost" / "ray_job"
HOLD_LIMIT_SECONDS = 300  # the jobs end when the test releases them, or after this
SPOT_M5_XLARGE = 0.08  # default catalog, us-east-1 spot


def wait_status(client: JobSubmissionClient, submission_id: str, status: JobStatus, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = client.get_job_status(submission_id)
        if current == status:
            return
        if current.is_terminal():
            raise AssertionError(f"{submission_id} ended {current}:\n{client.get_job_logs(submission_id)[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{submission_id} not {status} after {timeout}s")


def scalar(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_jobs_with_metadata_get_cost_prometheus_can_sum_by_project(tmp_path: Path) -> None:
    labels = {"ray.io/market-type": "spot", "node.kubernetes.io/instance-type": "m5.xlarge", "pool": "cpu"}
    release = tmp_path / "release"
    with running_ray_head(tmp_path / "ray", num_cpus=4, labels=labels) as head:
        config = tmp_path / "raylens.yaml"
        config.write_text(
            json.dumps(
                {
                    "ray": {"address": head.dashboard_url, "timeout_seconds": 10, "sources": FAST_RAY_SOURCES},
                    "cost": {
                        "state_dir": str(tmp_path / "cost-state"),
                        "default_region": "us-east-1",
                        "export_node_labels": ["pool"],
                    },
                }
            )
        )
        client = JobSubmissionClient(head.dashboard_url)
        python = sys.executable
        submissions = {
            "vision": client.submit_job(
                entrypoint=f"{python} hold.py {release} {HOLD_LIMIT_SECONDS} actor",
                runtime_env={"working_dir": str(JOB)},
                metadata={"user": "alice", "project": "vision", "team": "ml"},
            ),
            "nlp": client.submit_job(
                entrypoint=f"{python} hold.py {release} {HOLD_LIMIT_SECONDS}",
                runtime_env={"working_dir": str(JOB)},
                metadata={"user": "bob", "project": "nlp", "team": "ml", "workload": "batch"},
            ),
        }
        for submission in submissions.values():
            wait_status(client, submission, JobStatus.RUNNING)
        with (
            running_exporter(tmp_path, "--collectors=cost", f"--config.file={config}") as exporter,
            running_prometheus(tmp_path, [exporter.address]) as prometheus,
        ):
            prometheus.wait_for('raylens_scrape_collector_success{collector="cost"} == 1', timeout=60)
            # Both jobs hold their CPUs until released: each shows a current rate and a growing total.
            prometheus.wait_for(
                'count(sum by (project) (raylens_cost_allocation_dollars_per_second{project=~"vision|nlp"}) > 0) == 2',
                timeout=120,
            )
            prometheus.wait_for(
                'count(sum by (project) (raylens_cost_allocation_dollars_total{project=~"vision|nlp"}) > 0) == 2',
                timeout=60,
            )
            # The head is priced from its labels: m5.xlarge, spot, catalog.
            info = prometheus.query("raylens_cost_node_info")
            assert [
                (i["metric"]["instance_type"], i["metric"]["market"], i["metric"]["pricing_source"]) for i in info
            ] == [("m5.xlarge", "spot", "catalog")]
            rate = scalar(
                prometheus.query('raylens_cost_node_dollars_per_second{cost_kind="compute",label_pool="cpu"}')
            )
            assert rate == pytest.approx(SPOT_M5_XLARGE / 3600)

            # Of the node's 4 CPUs vision holds 1.5 (a task and an actor), nlp 1; memory follows CPU, so
            # they pay 1.5/4 and 1/4 of the node and the rest is idle. (Ray reports task states a
            # moment late, so wait for the split to settle.)
            def split() -> dict[str, float]:
                return {
                    row["metric"]["project"]: float(row["value"][1]) / rate
                    for row in prometheus.query("sum by (project) (raylens_cost_allocation_dollars_per_second)")
                }

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and split().get("vision", 0) != pytest.approx(0.375, rel=1e-6):
                time.sleep(0.5)
            shares = split()
            assert shares["vision"] == pytest.approx(0.375, rel=1e-6), shares
            assert shares["nlp"] == pytest.approx(0.25, rel=1e-6), shares
            assert shares["__idle__"] == pytest.approx(0.375, rel=1e-6), shares
            jobs = prometheus.query("raylens_cost_job_info")
            workloads = {row["metric"].get("submission_id", ""): row["metric"]["workload_source"] for row in jobs}
            assert workloads[submissions["nlp"]] == "metadata"

            release.touch()
            for submission in submissions.values():
                wait_status(client, submission, JobStatus.SUCCEEDED)
            # Once they end, their rates go and their totals stay; the node's cost is now idle.
            prometheus.wait_for(
                'sum(raylens_cost_allocation_dollars_per_second{project="__idle__"})'
                " == on () sum(raylens_cost_node_dollars_per_second)",
                timeout=60,
            )
            spent = {
                row["metric"]["project"]: float(row["value"][1])
                for row in prometheus.query("sum by (project) (raylens_cost_allocation_dollars_total)")
            }
            assert spent["vision"] > spent["nlp"] > 0
            # The books balance in Prometheus too: everything attributed plus idle is the node's cost.
            total = scalar(prometheus.query("sum(raylens_cost_node_dollars_total)"))
            attributed = scalar(prometheus.query("sum(raylens_cost_allocation_dollars_total)"))
            assert attributed == pytest.approx(total, rel=1e-6)
            assert total > 0
            unpriced = [
                line for line in exporter.scrape().splitlines() if line.startswith("raylens_cost_unpriced_nodes")
            ]
            assert len(unpriced) == 1 and unpriced[0].endswith(" 0.0"), unpriced
