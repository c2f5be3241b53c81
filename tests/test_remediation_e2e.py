"""``raylens remediate`` end to end: a real Ray head priced by the cost collector, Prometheus with our
rules, Alertmanager with the shipped routing, and the service acting through Ray's Job and Serve APIs.

One path runs through Alertmanager for real (a budget breach: rules fire, Alertmanager routes to the
webhook with its bearer token); the others post v4 payloads of the shape Alertmanager sends, so the
test does not wait out `for` and group timers. Every action hits the real Ray head. The service is
restarted between phases on the same port and files, as an operator would.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from ray_cluster import FAST_RAY_SOURCES, RayHead, running_ray_head
from remediation_service import RunningRemediation, alert, notification, running_remediation, write_config

from raylens.config import AlertsConfig
from raylens.remediation.ray_api import RayDashboard
from raylens.remediation.store import Store
from raylens.rules.budgets import load_budgets_file
from raylens.stack.ports import free_port
from raylens.stack.ray_head import WORKER_PORT_RANGE
from services import (
    RunningAlertmanager,
    RunningExporter,
    RunningPrometheus,
    RunningSink,
    running_alertmanager,
    running_exporter,
    running_prometheus,
    running_sink,
    write_dollar_per_second_pricing,
)

HOLD_JOB = Path(__file__).parent / "fixtures" / "cost" / "ray_job"
NODE_LABELS = {"raylens.io/instance-type": "e2e-node", "ray.io/market-type": "on-demand"}
# $1/s for the head's 2 CPUs: a job holding 1 CPU spends $0.5/s, past a $4 budget in 8 s.
BUDGETS = [
    {"name": "search-e2e", "scope": "project", "match": "search", "amount_usd": 4, "period": "month"},
    {"name": "vision-e2e", "scope": "project", "match": "vision", "amount_usd": 4, "period": "month"},
]
FAST_ALERTS = AlertsConfig(budget_threshold_for="2s", budget_projection_for="2s")
APPLICATION = {"name": "classifier", "route_prefix": "/classify", "import_path": "raylens.demo.serve_app:app"}


@dataclass
class Stack:
    tmp: Path
    head: RayHead
    ray: RayDashboard
    sink: RunningSink
    alertmanager: RunningAlertmanager
    exporter: RunningExporter
    prometheus: RunningPrometheus
    remediate_port: int

    def section(self, **overrides: Any) -> dict[str, Any]:
        return {
            "dry_run": False,
            "clusters": [
                {
                    "name": "e2e",
                    "dashboard_url": self.head.dashboard_url,
                    "match": [{"instance": self.exporter.address}, {"SessionName": ".+"}],
                }
            ],
            "prometheus_url": self.prometheus.url,
            "alertmanager_url": f"http://{self.alertmanager.address}",
            "over_budget_budgets": ["search-e2e"],
            "restart_backoff_seconds": 4,
            "max_restarts_per_hour": 2,
            "idle_ratio_min": 0.05,
            **overrides,
        }

    @contextlib.contextmanager
    def remediate(self, **overrides: Any) -> Iterator[RunningRemediation]:
        with running_remediation(self.tmp, self.section(**overrides), port=self.remediate_port) as service:
            yield service


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not after {timeout}s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("remediation")
    pricing, budgets, config = tmp / "pricing.yaml", tmp / "budgets.yaml", tmp / "exporter.yaml"
    write_dollar_per_second_pricing(pricing)
    budgets.write_text(yaml.safe_dump({"budgets": BUDGETS}))
    port = free_port()
    _, _token = write_config(tmp, {})  # the token file Alertmanager and every service instance share
    with contextlib.ExitStack() as stack:
        head = stack.enter_context(running_ray_head(tmp, num_cpus=2, labels=NODE_LABELS))
        config.write_text(
            yaml.safe_dump(
                {
                    "exporter": {"collectors": ["ray", "cost"]},
                    "ray": {"address": head.dashboard_url, "timeout_seconds": 10, "sources": FAST_RAY_SOURCES},
                    "cost": {
                        "pricing_files": [str(pricing)],
                        "budgets_file": str(budgets),
                        "state_dir": str(tmp / "cost"),
                    },
                }
            )
        )
        sink = stack.enter_context(running_sink(tmp))
        webhook = (f"http://127.0.0.1:{port}/webhook", tmp / "remediate.token")
        alertmanager = stack.enter_context(running_alertmanager(tmp, sink.address, remediation=webhook))
        exporter = stack.enter_context(running_exporter(tmp, f"--config.file={config}"))
        prometheus = stack.enter_context(
            running_prometheus(
                tmp,
                [exporter.address],
                alertmanager_targets=[alertmanager.address],
                alerts_config=FAST_ALERTS,
                budgets=load_budgets_file(budgets, [pricing]),
            )
        )
        prometheus.wait_for('raylens_scrape_collector_success{collector="cost"} == 1', timeout=60)
        yield Stack(tmp, head, RayDashboard(head.dashboard_url), sink, alertmanager, exporter, prometheus, port)


def serve_app(stack: Stack) -> dict[str, Any]:
    """The demo's Serve application, deployed from a config (so Serve's REST API can roll it)."""
    if "classifier" not in (stack.ray.serve().get("applications") or {}):
        # Serve's proxy on a free loopback port outside Ray's worker range, never the shared 8000.
        port = free_port()
        while port in WORKER_PORT_RANGE:
            port = free_port()
        stack.ray.deploy_serve({"http_options": {"host": "127.0.0.1", "port": port}, "applications": [APPLICATION]})

    def running() -> dict[str, Any] | None:
        app = (stack.ray.serve().get("applications") or {}).get("classifier")
        return app if app and app["status"] == "RUNNING" else None

    return wait_until(running, "Serve application classifier RUNNING", timeout=120)


def replica_ids(app: dict[str, Any], deployment: str) -> set[str]:
    return {replica["replica_id"] for replica in app["deployments"][deployment]["replicas"]}


def job_status(stack: Stack, submission_id: str) -> str:
    return str(stack.ray.job(submission_id)["status"])


def submit(stack: Stack, submission_id: str, entrypoint: str, project: str, **options: Any) -> str:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(stack.head.dashboard_url)
    metadata = {"project": project, "user": "e2e"}
    return client.submit_job(entrypoint=entrypoint, submission_id=submission_id, metadata=metadata, **options)


@pytest.mark.slow
def test_a_serve_deployment_is_rolled_through_the_serve_api(stack: Stack) -> None:
    before = serve_app(stack)
    session = requests.get(f"{stack.head.dashboard_url}/api/version", timeout=10).json()["session_name"]
    labels = {
        "alertname": "RaylensServeErrorBudgetBurn",
        "severity": "critical",
        "remediation": "restart-serve-deployment",
        "application": "classifier",
        "deployment": "Classifier",
        "SessionName": session,
    }
    with stack.remediate() as service:
        answer = service.post(notification([alert(labels, time.time() - 60)])).json()
        decision = answer["decisions"][0]
        assert (decision["outcome"], decision["target"]) == ("queued", "e2e/serve/classifier/Classifier")
        result = service.final_action(decision["action_id"], timeout=150)
    assert result["outcome"] == "acted", result
    after = (stack.ray.serve()["applications"])["classifier"]
    assert after["deployments"]["Classifier"]["status"] == "HEALTHY"
    assert replica_ids(after, "Classifier").isdisjoint(replica_ids(before, "Classifier"))
    assert replica_ids(after, "Tokenizer") == replica_ids(before, "Tokenizer")  # only the named deployment
    assert sorted(result["detail"]["replaced_replicas"]) == sorted(replica_ids(before, "Classifier"))


@pytest.mark.slow
def test_an_idle_cluster_is_a_dry_run_until_actions_are_on_and_then_its_work_is_stopped(stack: Stack) -> None:
    serve_app(stack)
    instance = f'instance="{stack.exporter.address}"'
    idle = f"cluster:raylens_cost_idle:ratio_rate5m{{{instance}}} > 0.05"
    stack.prometheus.wait_for(idle, timeout=90)
    sleeper = submit(stack, f"idle-notebook-{int(time.time())}", "python -c 'import time; time.sleep(600)'", "lab")
    wait_until(lambda: job_status(stack, sleeper) == "RUNNING", "the idle job running")
    labels = {
        "alertname": "RaylensClusterIdle",
        "severity": "warning",
        "remediation": "scale-down",
        "instance": stack.exporter.address,
        "job": "raylens",
    }
    key = '{}/{remediation=~".+"}:{alertname="RaylensClusterIdle", ' + instance + "}"
    episode = time.time() - 3600

    with stack.remediate(dry_run=True) as service:  # the default: look, do not touch
        first = service.post(notification([alert(labels, episode)], group_key=key)).json()
        dry = service.final_action(first["decisions"][0]["action_id"])
    assert dry["outcome"] == "dry_run", dry
    assert "would shut down Serve and its applications classifier" in dry["steps"]
    assert f"would stop job {sleeper} (project lab, user e2e)" in dry["steps"]
    assert "classifier" in stack.ray.serve()["applications"] and job_status(stack, sleeper) == "RUNNING"

    with stack.remediate(idle_ratio_min=0.99) as service:  # acting, but the live re-check says no
        second = service.post(notification([alert(labels, episode + 60)], group_key=key)).json()
        rechecked = service.final_action(second["decisions"][0]["action_id"])
    assert rechecked["outcome"] == "skipped" and "no longer idle" in rechecked["reason"], rechecked
    assert "classifier" in stack.ray.serve()["applications"]

    payload = notification([alert(labels, episode + 120)], group_key=key)
    with stack.remediate() as service:
        third = service.post(payload).json()
        acted = service.final_action(third["decisions"][0]["action_id"], timeout=150)
        redelivered = service.post(payload).json()
    assert acted["outcome"] == "acted", acted
    assert acted["detail"]["idle_ratio"] >= 0.05
    assert stack.ray.serve().get("applications") in ({}, None)
    wait_until(lambda: job_status(stack, sleeper) == "STOPPED", "the idle job stopped")
    assert redelivered["decisions"][0]["outcome"] == "duplicate"
    # Three deliveries of one group: one incident, its timeline holding all three decisions.
    assert first["incident"] == second["incident"] == third["incident"] == redelivered["incident"]


@pytest.mark.slow
def test_a_failed_job_is_restarted_then_backs_off_then_stops_at_the_hourly_cap(stack: Stack) -> None:
    root = f"etl-{int(time.time())}"
    submit(stack, root, f"{sys.executable} -c 'import sys; sys.exit(3)'", "etl")
    wait_until(lambda: job_status(stack, root) == "FAILED", "the job failing")

    def failed_alert(submission_id: str) -> dict[str, Any]:
        labels = {
            "alertname": "RaylensJobFailed",
            "severity": "warning",
            "remediation": "restart-failed-job",
            "instance": stack.exporter.address,
            "submission_id": submission_id,
        }
        return notification([alert(labels, time.time() - 5)])

    with stack.remediate() as service:
        first = service.post(failed_alert(root)).json()["decisions"][0]
        acted = service.final_action(first["action_id"])
        assert acted["outcome"] == "acted", acted
        restarted = f"{root}-restart-1"
        assert stack.ray.job(restarted)["metadata"]["raylens_restart_of"] == root
        wait_until(lambda: job_status(stack, restarted) == "FAILED", "the restart failing too")

        second = service.post(failed_alert(restarted)).json()["decisions"][0]
        assert second["outcome"] == "deferred" and "backoff" in second["reason"], second
        backed_off = service.final_action(second["action_id"])
        assert backed_off["outcome"] == "acted", backed_off
        again = f"{root}-restart-2"
        wait_until(lambda: job_status(stack, again) == "FAILED", "the second restart failing")

        third = service.post(failed_alert(again)).json()["decisions"][0]
    assert third["outcome"] == "skipped" and "2 restarts of e2e/job/" in third["reason"], third
    decided = {entry["action_id"]: entry for entry in service.audit() if entry.get("outcome") == "started"}
    gap = time.mktime(time.strptime(decided[second["action_id"]]["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - time.mktime(
        time.strptime(decided[first["action_id"]]["ts"][:19], "%Y-%m-%dT%H:%M:%S")
    )
    assert gap >= 3, gap  # the second restart waited out the 4 s backoff (whole seconds in the record)
    assert f"{root}-restart-3" not in {job.get("submission_id") for job in stack.ray.jobs()}


@pytest.mark.slow
def test_a_critical_incident_nobody_acknowledges_escalates_through_alertmanager(stack: Stack) -> None:
    labels = {"alertname": "RaylensNodeDown", "severity": "critical", "team": "search", "node_id": "n-e2e"}
    levels = [{"name": "secondary-oncall", "after": "2s"}]
    with stack.remediate(escalation_levels=levels, escalation_check_seconds=1) as service:
        incident = service.post(notification([alert(labels, time.time() - 1)])).json()["incident"]

        def escalations(status: str) -> list[dict[str, Any]]:
            return [
                notification
                for notification in stack.sink.notifications()
                if notification["receiver"] == "escalation"
                and notification["status"] == status
                and notification["commonLabels"].get("incident") == str(incident)
            ]

        paged = wait_until(lambda: escalations("firing"), "an escalation notification", timeout=60)[0]
        assert paged["commonLabels"]["escalation_level"] == "secondary-oncall"
        assert paged["commonLabels"]["escalated_alertname"] == "RaylensNodeDown"
        assert paged["commonLabels"]["team"] == "search"
        database = f"--db={service.database}"
        acknowledged = subprocess_raylens("incidents", "ack", str(incident), "--by", "carol", database)
        assert acknowledged.returncode == 0, acknowledged.stderr
        wait_until(lambda: escalations("resolved"), "the escalation resolved after the acknowledgement", timeout=60)
    entry = service.wait_for_audit(lambda e: e["action"] == "incident_escalated" and e["incident_id"] == incident)
    assert entry["level"] == "secondary-oncall"


def check_impact_figures(stack: Stack, service: RunningRemediation) -> None:
    """A fired-then-resolved incident about project search gets figures its own PromQL reproduces."""
    labels = {"alertname": "SearchLatencyHigh", "severity": "warning", "project": "search", "application": "search"}
    started, ended = time.time() - 30, time.time() - 2
    service.post(notification([alert(labels, started)]))
    incident_id = service.post(notification([alert(labels, started, ends_at=ended)])).json()["incident"]
    incident = wait_until(
        lambda: (row := Store(service.database).incident(incident_id)) and row["impact"] and row, "impact figures"
    )
    figures = {figure["name"]: figure for figure in incident["impact"]}
    spend = figures["Spend during the incident, project search"]
    assert spend["value"] > 0, spend
    again = stack.prometheus.query(spend["promql"])
    assert float(again[0]["value"][1]) == pytest.approx(spend["value"])
    # This Prometheus scrapes no Ray metrics: the Serve figures' queries ran, and found no data.
    budget = figures["Error budget consumed, Serve application search"]
    assert budget["value"] is None and budget["note"] == "no data in Prometheus for this range", budget


def subprocess_raylens(*args: str):
    import subprocess

    return subprocess.run([sys.executable, "-m", "raylens", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_a_budget_breach_through_alertmanager_stops_only_the_opted_in_scopes_newest_job(stack: Stack) -> None:
    release = stack.tmp / "release-budget"
    run = int(time.time())
    hold = f"{sys.executable} hold.py {release} 300"
    jobs = {
        "search-old": f"search-old-{run}",
        "vision": f"vision-{run}",
        "search-new": f"search-new-{run}",
    }
    with stack.remediate() as service:
        for name, submission_id in jobs.items():
            project = name.split("-")[0]
            if name == "search-new":  # holds nothing: spend comes from the older job
                submit(stack, submission_id, "python -c 'import time; time.sleep(300)'", project)
            else:
                submit(stack, submission_id, hold, project, runtime_env={"working_dir": str(HOLD_JOB)})
            wait_until(lambda submission_id=submission_id: job_status(stack, submission_id) == "RUNNING", name)
        try:
            stopped = service.wait_for_audit(
                lambda e: (
                    e.get("remediation") == "stop-over-budget-jobs"
                    and e["outcome"] == "acted"
                    and e["target"] == "e2e/budget/search-e2e"
                ),
                timeout=180,
            )
            refused = service.wait_for_audit(
                lambda e: e.get("remediation") == "stop-over-budget-jobs" and e["target"] == "e2e/budget/vision-e2e",
                timeout=120,
            )
            webhook = service.wait_for_audit(
                lambda e: e["action"] == "remediation_webhook" and e["group_key"] == stopped["group_key"]
            )
            assert webhook["actor"] == "bearer-token" and webhook["receiver"] == "remediation"
            wait_until(lambda: job_status(stack, jobs["search-new"]) == "STOPPED", "the newest search job stopped")
            assert job_status(stack, jobs["search-old"]) == "RUNNING"
            assert job_status(stack, jobs["vision"]) == "RUNNING"
            assert refused["outcome"] == "skipped" and "has not opted in" in refused["reason"], refused
            assert stopped["detail"]["kept_running"] == [jobs["search-old"]]

            # The same notification delivered again: a duplicate, nothing stopped.
            firing = next(
                a
                for a in stack.alertmanager.alerts()
                if a["labels"].get("budget") == "search-e2e" and a["labels"]["threshold"] == "100"
            )
            again = notification(
                [{**alert(firing["labels"], 0), "startsAt": firing["startsAt"], "fingerprint": firing["fingerprint"]}],
                group_key=stopped["group_key"],
            )
            decisions = service.post(again).json()["decisions"]
            assert [decision["outcome"] for decision in decisions] == ["duplicate"], decisions
            assert job_status(stack, jobs["search-old"]) == "RUNNING"
            check_impact_figures(stack, service)
        finally:
            release.touch()
            for submission_id in jobs.values():
                with contextlib.suppress(Exception):
                    stack.ray.stop_job(submission_id)
