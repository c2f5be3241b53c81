"""What ``raylens remediate`` exports on its own ``/metrics``.

Sample::

    raylens_remediation_webhooks_total{outcome="accepted"} 12
    raylens_remediation_webhooks_total{outcome="unauthorized"} 2
    raylens_remediation_actions_total{action="scale-down",result="dry_run"} 1
    raylens_remediation_actions_total{action="restart-failed-job",result="acted"} 2
    raylens_remediation_action_duration_seconds_bucket{action="scale-down",le="5.0"} 1
    raylens_remediation_dry_run 1
    raylens_incidents_open{severity="critical"} 1
    raylens_incident_escalations_total{level="secondary-oncall"} 1
    raylens_incident_escalation_post_errors_total 0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

WEBHOOK_OUTCOMES = ("accepted", "unauthorized", "malformed", "too_large", "length_required", "not_found")
RESULTS = ("acted", "dry_run", "skipped", "failed", "duplicate", "deferred")


class OpenIncidentsCollector(Collector):
    """Open incidents by severity, read from the store on each scrape (it is the source of truth)."""

    def __init__(self, count_open: Callable[[], dict[str, int]]):
        self._count_open = count_open

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("raylens_incidents_open", "Incidents not resolved yet.", labels=["severity"])
        for severity, count in sorted(self._count_open().items()):
            family.add_metric([severity], count)
        yield family


class RemediationMetrics:
    def __init__(self, dry_run: bool, count_open: Callable[[], dict[str, int]]):
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhooks = Counter(
            "raylens_remediation_webhooks",
            "Webhook requests received, by outcome (accepted, or why refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.actions = Counter(
            "raylens_remediation_actions",
            "Remediation decisions by action and result: acted, dry_run, skipped, failed, duplicate (a "
            "re-delivery), deferred (a restart backing off; it counts again when it runs).",
            ["action", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "raylens_remediation_action_duration_seconds",
            "Time an action took from its live check to its last step.",
            ["action"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300),
            registry=self.registry,
        )
        self.escalations = Counter(
            "raylens_incident_escalations",
            "Incidents escalated, by escalation level.",
            ["level"],
            registry=self.registry,
        )
        self.escalation_errors = Counter(
            "raylens_incident_escalation_post_errors",
            "Failed posts of escalation alerts to Alertmanager (retried on the next check).",
            registry=self.registry,
        )
        mode = Gauge(
            "raylens_remediation_dry_run", "1 while actions are only recorded, 0 when they run.", registry=self.registry
        )
        mode.set(1 if dry_run else 0)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhooks.labels(outcome)
        self.registry.register(OpenIncidentsCollector(count_open))
