"""Every panel of every dashboard shows data on a live stack.

A real Prometheus loaded with our recording and alerting rules scrapes: the raylens exporter (node,
Ray and cost collectors, GPUs through the fake NVML of an H100 node serving and training), a second
exporter whose fake H100 just logged an XID burst, and a real single-node Ray cluster running a Ray
Serve app under requests (one in ten fails), a failing task, a ~20 s Ray Data pipeline and a small
Ray Train run (tests/dashboards_workload.py). Then every target of every panel, with every variable
at "All", must return at least one series over the test's time range, and every variable's query
must offer at least one value.

A panel that cannot be fed here is listed in ``EXCEPTIONS`` with the reason; the test fails if a
listed panel unexpectedly has data (the list then needs trimming) — except the ones marked as
"may have data", which depend on timing. Set RAYLENS_DASHBOARD_PREVIEWS=<folder> to also render
every dashboard as a PNG there (how docs/dashboards/img/ is made).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from panel_check import empty_targets
from ray_cluster import FAST_RAY_SOURCES, running_ray_head

from raylens.config import KNOWN_COLLECTORS
from raylens.stack.ports import free_port
from raylens.stack.tools import bundle_root
from services import REPO, running_blackbox, running_exporter, running_prometheus

pytestmark = pytest.mark.slow

NVML_FIXTURES = REPO / "tests" / "fixtures" / "nvml"
# (dashboard uid, panel title) → why CI cannot feed it. Keep reasons specific: each is a promise
# that the panel works once the condition occurs in production.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("raylens-ray-core", "Workers killed for memory (OOM)"): "Ray creates "
    "ray_memory_manager_worker_eviction_total only at the first OOM kill; CI never exhausts memory",
    ("raylens-ray-core", "Unschedulable tasks by reason"): "ray_scheduler_unscheduleable_tasks appears "
    "only when a task asks for resources no node has",
    # Issue #11: the recommend collector needs hours of history (its shortest window is 6 h); these
    # panels are checked on backfilled history in tests/test_recommend.py instead.
    **{
        ("raylens-cost", title): "recommendations need hours of history; see test_recommend.py's Savings row test"
        for title in (
            "Potential savings per month",
            "Recommendations",
            "Savings per month by kind",
            "Potential savings over time",
            "What to change",
        )
    },
}
# Listed above but allowed to have data, because it depends on timing rather than on a condition
# CI never creates.
MAY_HAVE_DATA: set[tuple[str, str]] = {
    ("raylens-ray-core", "Unschedulable tasks by reason"),
}
# Grafana's $__rate_interval is max(4 x scrape interval, step): the test scrapes every second.
RATE_INTERVAL = "20s"
WORKLOAD_TIMEOUT = 240


def _collectors() -> list[str]:
    return [name for name in ("node", "gpu", "ray", "cost") if name in KNOWN_COLLECTORS]


def _exporter_config(tmp: Path, head: Any) -> Path:
    """Node, GPU, Ray and cost collectors against the test head; cost with budgets, quotas, volumes,
    spill and egress prices so every cost kind has spend."""
    budgets = tmp / "budgets.yaml"
    budgets.write_text(
        yaml.safe_dump(
            {
                "budgets": [
                    {"name": "org-monthly", "scope": "org", "amount_usd": 5000, "period": "month"},
                    {"name": "vision-daily", "scope": "project", "match": "vision", "amount_usd": 20, "period": "day"},
                ]
            }
        )
    )
    quotas = tmp / "quotas.yaml"
    quotas.write_text(
        yaml.safe_dump(
            {
                "quotas": [
                    {"name": "cpus-per-user", "scope": "user", "match": "*", "resource": "cpus", "limit": 4},
                    {"name": "cluster-instances", "scope": "global", "resource": "instances", "limit": 10},
                ]
            }
        )
    )
    config: dict[str, Any] = {"exporter": {"collectors": _collectors()}}
    if "ray" in _collectors():
        # The workload's Data and Train phases hold CPUs for seconds only (its Serve replica holds none):
        # at the default task-listing interval a read can fall between them.
        config["ray"] = {"address": head.dashboard_url, "sources": FAST_RAY_SOURCES}
    if "cost" in _collectors():
        config["cost"] = {
            "default_instance_type": "m5.xlarge",
            "budgets_file": str(budgets),
            "quotas_file": str(quotas),
            "state_dir": str(tmp / "cost-state"),
            "egress_usd_per_gib": 0.09,
            "spill_usd_per_gib_month": 0.1,
            "volumes": [{"name": "root", "size_gib": 100, "usd_per_gib_month": 0.08}],
        }
    path = tmp / "raylens.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("dashboards-live")
    started = time.time()
    with running_ray_head(tmp, num_cpus=2) as head:
        config_path = _exporter_config(tmp, head)
        with pytest.MonkeyPatch.context() as env, contextlib.ExitStack() as stack:
            env.setenv("RAYLENS_FAKE_NVML", str(NVML_FIXTURES / "h100-sxm-80gb.json"))
            exporter = stack.enter_context(running_exporter(tmp, f"--config.file={config_path}"))
            # An H100 that just logged a burst of XID errors.
            # Its XIDs also fire RaylensGpuXidError, which feeds the overview's "Firing alerts" table.
            env.setenv("RAYLENS_FAKE_NVML", str(NVML_FIXTURES / "h100-sxm-80gb-xid-burst.json"))
            xid_exporter = stack.enter_context(running_exporter(tmp, "--collectors=gpu"))
            # An A100 whose second GPU is held by an idle Ray worker and does nothing.
            env.setenv("RAYLENS_FAKE_NVML", str(NVML_FIXTURES / "a100-sxm4-40gb.json"))
            idle_exporter = stack.enter_context(running_exporter(tmp, "--collectors=gpu"))
            env.delenv("RAYLENS_FAKE_NVML")
            # The shipped prometheus.yml reads Ray's targets from targets/ray.json; the metrics
            # agent listens on every interface, so loopback reaches it.
            targets = tmp / "prometheus" / "targets"
            targets.mkdir(parents=True)
            ray_targets = [
                head.metrics_address,
                f"127.0.0.1:{head.ports.autoscaler_metrics}",
                f"127.0.0.1:{head.ports.dashboard_metrics}",
            ]
            (targets / "ray.json").write_text(json.dumps([{"targets": ray_targets, "labels": {}}]))
            exporters = [exporter.address, xid_exporter.address, idle_exporter.address]
            # Probes the workload's Serve route from outside (the Serve dashboard's uptime row).
            blackbox = stack.enter_context(running_blackbox(tmp))
            prometheus = stack.enter_context(running_prometheus(tmp, exporters, blackbox_address=blackbox))
            yield from _with_workload(tmp, head, prometheus, started)


def _with_workload(tmp: Path, head: Any, prometheus: Any, started: float):
    """Submit the workload as a Ray job whose metadata names a user and project (cost attribution)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.dashboard_url)
    stop_file = tmp / "stop-workload"
    serve_port = free_port()
    # What `raylens sd` writes for the workload's Serve app (tests/dashboards_workload.py: /echo).
    serve_targets = [{"targets": [f"http://127.0.0.1:{serve_port}/echo"], "labels": {"application": "echo"}}]
    (tmp / "prometheus" / "targets" / "serve.json").write_text(json.dumps(serve_targets))
    entrypoint = " ".join(
        [
            sys.executable,
            str(REPO / "tests" / "dashboards_workload.py"),
            "--address=auto",
            f"--serve-port={serve_port}",
            f"--storage={tmp / 'train-storage'}",
            f"--stop-file={stop_file}",
            f"--seconds={WORKLOAD_TIMEOUT + 120}",
        ]
    )
    job_id = client.submit_job(entrypoint=entrypoint, metadata={"user": "alice", "project": "vision", "team": "ml"})
    log_path = tmp / "workload.log"
    try:
        deadline = time.monotonic() + WORKLOAD_TIMEOUT
        while True:
            logs = client.get_job_logs(job_id)
            log_path.write_text(logs)
            if "serving until stopped" in logs:
                break
            status = client.get_job_status(job_id)
            assert not status.is_terminal(), f"workload ended {status}:\n{logs[-4000:]}"
            assert time.monotonic() < deadline, f"workload too slow:\n{logs[-4000:]}"
            time.sleep(2)
        yield prometheus, started, log_path
    finally:
        stop_file.touch()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not client.get_job_status(job_id).is_terminal():
            time.sleep(1)
        if not client.get_job_status(job_id).is_terminal():
            client.stop_job(job_id)


def _empty_targets(url: str, started: float) -> tuple[list[str], set[tuple[str, str]]]:
    return empty_targets(url, started, time.time(), RATE_INTERVAL, EXCEPTIONS)


def test_every_panel_shows_data(live) -> None:
    prometheus, started, log_path = live
    # Rates need two samples and the 5m recording rules a few evaluations; Ray exports every ~5 s.
    deadline = time.monotonic() + 90
    while True:
        empty, empty_panels = _empty_targets(prometheus.url, started)
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert not empty, "panels without data (add to EXCEPTIONS only with a reason):\n" + "\n".join(empty)
    unexpectedly_fed = sorted(set(EXCEPTIONS) - empty_panels - MAY_HAVE_DATA)
    assert not unexpectedly_fed, f"listed as exceptions but have data (remove them): {unexpectedly_fed}"

    previews = os.environ.get("RAYLENS_DASHBOARD_PREVIEWS")
    from raylens.dashboards.render import render_dashboards

    minutes = (time.time() - started) / 60 + 1
    output = Path(previews) if previews else log_path.parent / "previews"
    written = render_dashboards(
        bundle_root(), prometheus.url, output, keys=None if previews else ["overview"], minutes=minutes
    )
    assert written and all(path.stat().st_size > 10_000 for path in written)
