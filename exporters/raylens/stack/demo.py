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


# Budget alerts wait this long in the demo (production default: alerts.budget_threshold_for, 5m).
DEMO_BUDGET_THRESHOLD_FOR = "30s"

# A deliberately high demo price, so spend moves visibly within minutes on a laptop.
DEMO_USD_PER_HOUR = 36.0


def demo_pricing(cpus: int, memory_gib: float) -> dict:
    return {
        "format_version": 1,
        "instance_types": [
            {
                "instance_type": "local-demo",
                "cloud": "onprem",
                "vcpus": cpus,
                "memory_gib": round(memory_gib, 1),
                "gpus": 0,
                "usd_per_hour": DEMO_USD_PER_HOUR,
                "source": "raylens demo figure (not a real price): $36/h so spend moves within minutes",
                "as_of": "2026-11-25",
            }
        ],
    }


def demo_budgets() -> dict:
    return {
        "budgets": [
            {"name": "org-monthly", "scope": "org", "amount_usd": 5000, "period": "month"},
            {"name": "vision-daily", "scope": "project", "match": "vision", "amount_usd": 50, "period": "day"},
            # Small on purpose: the Serve demo crosses 50/80/100 % of it within a few minutes.
            {"name": "search-daily", "scope": "project", "match": "search", "amount_usd": 0.1, "period": "day"},
            {"name": "alice-daily", "scope": "user", "match": "alice", "amount_usd": 20, "period": "day"},
        ]
    }


def apply_demo_settings(config: dict, state_dir: Path) -> dict:
    """Price the local head and set sample budgets, from files written into the state folder."""
    import psutil
    import yaml

    demo_dir = state_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    pricing = demo_dir / "pricing.yaml"
    budgets = demo_dir / "budgets.yaml"
    cpus = max(2, psutil.cpu_count() or 2)
    pricing.write_text(yaml.safe_dump(demo_pricing(cpus, psutil.virtual_memory().total / 2**30), sort_keys=False))
    budgets.write_text(yaml.safe_dump(demo_budgets(), sort_keys=False))
    cost = config.setdefault("cost", {})
    cost["pricing_files"] = [*cost.get("pricing_files", []), str(pricing)]
    cost.setdefault("budgets_file", str(budgets))
    cost.setdefault("state_dir", str(state_dir / "cost"))
    return config
