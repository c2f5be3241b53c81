"""``raylens status``: one screen answering "is it working?" for a stack that ``raylens up`` started.

Reads the PIDs and URLs recorded in ``<state>/stack.json`` and asks the live services: each
component up or down, the scrape health of every Prometheus target, firing alerts from
Alertmanager, spend so far by project and budget use from Prometheus, and what the demo runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from raylens.stack.demo_loop import describe_demo, read_demo_state
from raylens.stack.processes import pid_alive
from raylens.stack.up import read_state

# Queries over recording rules and exporter series; kept here so the screen and the docs agree.
SPEND_BY_PROJECT = "sort_desc(sum by (project) (raylens_cost_allocation_dollars_total))"
BUDGET_USED = "sort_desc(raylens_budget_spend_dollars / raylens_budget_amount_dollars)"


@dataclass
class StatusReport:
    components: list[tuple[str, bool, str]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    spend_by_project: list[tuple[str, float]] = field(default_factory=list)
    budgets: list[tuple[str, float]] = field(default_factory=list)
    cluster: dict[str, Any] | None = None
    """The exporter's /health/cluster answer (raylens.ray.endpoints), when it runs the ray collector."""
    problems: list[str] = field(default_factory=list)
    demo: dict[str, Any] | None = None

    @property
    def healthy(self) -> bool:
        return (
            bool(self.components)
            and all(up for _, up, _ in self.components)
            and all(target["health"] == "up" for target in self.targets)
        )


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    body = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    return body.get("data", {}).get("result", [])


def collect_status(state_dir: Path) -> StatusReport | None:
    state = read_state(state_dir)
    if state is None:
        return None
    report = StatusReport()
    urls: dict[str, str] = state.get("urls", {})
    for component in state["components"]:
        name = component["name"]
        report.components.append((name, pid_alive(component["pid"]), urls.get(name, "")))

    prometheus = urls.get("prometheus")
    if prometheus:
        try:
            active = requests.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            report.targets = sorted(active, key=lambda target: (target["labels"]["job"], target["scrapeUrl"]))
            report.spend_by_project = [
                (row["metric"].get("project") or "(none)", float(row["value"][1]))
                for row in _query(prometheus, SPEND_BY_PROJECT)
            ]
            report.budgets = [
                (row["metric"].get("budget", "?"), float(row["value"][1])) for row in _query(prometheus, BUDGET_USED)
            ]
        except (requests.RequestException, ValueError, KeyError) as error:
            report.problems.append(f"Prometheus at {prometheus} did not answer: {error}")
    report.demo = read_demo_state(state_dir)
    exporter = urls.get("exporter", "").removesuffix("/metrics")
    if exporter:
        try:
            answer = requests.get(f"{exporter}/health/cluster", timeout=5)
            if answer.status_code in (200, 503):
                report.cluster = answer.json()
        except (requests.RequestException, ValueError) as error:
            report.problems.append(f"exporter at {exporter} did not answer: {error}")
    alertmanager = urls.get("alertmanager")
    if alertmanager:
        try:
            alerts = requests.get(f"{alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=5).json()
            report.alerts = [alert for alert in alerts if alert.get("status", {}).get("state") == "active"]
        except (requests.RequestException, ValueError) as error:
            report.problems.append(f"Alertmanager at {alertmanager} did not answer: {error}")
    return report


def _ago(timestamp: str) -> str:
    try:
        seconds = time.time() - time.mktime(time.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S")) + time.timezone
    except ValueError:
        return "?"
    return f"{max(seconds, 0):.0f}s ago"


def format_status(report: StatusReport, currency: str = "$") -> str:
    lines = ["Components"]
    for name, up, url in report.components:
        lines.append(f"  {name:<13} {'up' if up else 'DOWN':<5} {url}")
    lines.append("Scrape targets")
    if not report.targets:
        lines.append("  (none yet)")
    for target in report.targets:
        health = target["health"]
        detail = (
            f"last scrape {_ago(target.get('lastScrape', ''))}, {target.get('lastScrapeDuration', 0) * 1000:.0f} ms"
        )
        error = f" — {target['lastError']}" if target.get("lastError") else ""
        lines.append(f"  {target['labels']['job']:<8} {target['scrapeUrl']:<45} {health:<7} {detail}{error}")
    lines.append("Firing alerts")
    if not report.alerts:
        lines.append("  none")
    for alert in sorted(report.alerts, key=lambda a: (a["labels"].get("severity", ""), a["labels"]["alertname"])):
        labels = alert["labels"]
        context = " ".join(
            f"{key}={value}"
            for key, value in sorted(labels.items())
            if key not in ("alertname", "severity", "job", "instance", "__name__")
        )
        summary = alert.get("annotations", {}).get("summary", "")
        lines.append(f"  {labels.get('severity', '?'):<8} {labels['alertname']} {context} — {summary}")
    lines.append("Spend so far by project")
    if not report.spend_by_project:
        lines.append("  (no cost data yet)")
    for project, dollars in report.spend_by_project:
        lines.append(f"  {project:<20} {currency}{dollars:,.4f}")
    if report.cluster is not None:
        ray = report.cluster.get("ray", {})
        nodes = ray.get("nodes", {})
        lines.append(f"Cluster {report.cluster.get('cluster') or '(unnamed)'}")
        lines.append(
            f"  {'healthy' if report.cluster.get('healthy') else 'UNHEALTHY'}: {nodes.get('alive', 0)} nodes alive, "
            f"{nodes.get('dead', 0)} dead; Serve: "
            + (", ".join(f"{name} {state}" for name, state in ray.get("serve_applications", {}).items()) or "none")
        )
        lines += [f"  ! {problem}" for problem in report.cluster.get("problems", [])]
    lines.append("Budgets (period to date)")
    if not report.budgets:
        lines.append("  (no budgets configured)")
    for budget, used in report.budgets:
        lines.append(f"  {budget:<20} {used * 100:6.1f} % used")
    if report.demo is not None:
        lines.append("Demo")
        lines += [f"  {line}" for line in describe_demo(report.demo)]
    for problem in report.problems:
        lines.append(f"! {problem}")
    return "\n".join(lines)


def status_json(report: StatusReport) -> dict[str, Any]:
    """The report for external checkers (``raylens status --json``): stable keys, no formatting."""
    return {
        "healthy": report.healthy and not report.problems,
        "components": [{"name": name, "up": up, "url": url} for name, up, url in report.components],
        "targets": [
            {
                "job": target["labels"].get("job", ""),
                "url": target.get("scrapeUrl", ""),
                "health": target.get("health", ""),
                "last_error": target.get("lastError", ""),
                "cluster": target["labels"].get("cluster", ""),
            }
            for target in report.targets
        ],
        "firing_alerts": [
            {"name": alert["labels"].get("alertname", ""), "labels": alert["labels"]} for alert in report.alerts
        ],
        "spend_by_project_dollars": dict(report.spend_by_project),
        "budgets_used_ratio": dict(report.budgets),
        "cluster": report.cluster,
        "problems": report.problems,
    }


def print_status(state_dir: Path, say: Callable[[str], None] = print, as_json: bool = False) -> int:
    report = collect_status(state_dir)
    if report is None:
        if as_json:
            say(json.dumps({"healthy": False, "problems": [f"no stack recorded in {state_dir}"]}))
        else:
            say(f"no stack recorded in {state_dir}; start one with `raylens up`")
        return 1
    say(json.dumps(status_json(report), indent=2, sort_keys=True) if as_json else format_status(report))
    return 0 if report.healthy and not report.problems else 1
