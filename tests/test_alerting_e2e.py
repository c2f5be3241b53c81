"""Real metrics → real Prometheus with our rules → real Alertmanager with our routing → the sink.

Only the timers are shortened (`for`, group_wait); the rules, routes and receivers are the shipped ones.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from raylens.config import AlertsConfig
from services import running_alertmanager, running_exporter, running_prometheus, running_sink

FAST_ALERTS = AlertsConfig(exporter_down_for="3s", collector_failing_for="3s", resource_alert_for="3s")


def wait_for_notifications(sink, predicate, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        matching = [notification for notification in sink.notifications() if predicate(notification)]
        if matching:
            return matching
        time.sleep(0.5)
    raise AssertionError(f"no matching notification after {timeout}s; got {sink.notifications()}")


def alertnames(notification: dict) -> set[str]:
    return {alert["labels"]["alertname"] for alert in notification["alerts"]}


@pytest.mark.slow
def test_an_exporter_that_dies_pages_nobody_but_reaches_the_platform_channel(tmp_path: Path) -> None:
    with (
        running_sink(tmp_path) as sink,
        running_alertmanager(tmp_path, sink.address) as alertmanager,
        running_exporter(tmp_path) as healthy,
        running_exporter(tmp_path) as doomed,
        running_prometheus(
            tmp_path,
            [healthy.address, doomed.address],
            alertmanager_targets=[alertmanager.address],
            alerts_config=FAST_ALERTS,
        ) as prometheus,
    ):
        prometheus.wait_for('count(up{job="raylens"} == 1) == 2')
        doomed.process.stop()

        notifications = wait_for_notifications(
            sink, lambda n: "RaylensExporterDown" in alertnames(n) and n["status"] == "firing"
        )
        # Give routing a moment to deliver anything else it (wrongly) would.
        time.sleep(3)
        down = [n for n in sink.notifications() if "RaylensExporterDown" in alertnames(n)]
        assert {n["receiver"] for n in down} == {"platform-channel"}, down
        alert = notifications[0]["alerts"][0]
        assert alert["labels"]["instance"] == doomed.address
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"] == "A raylens exporter cannot be scraped."
        assert doomed.address in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith("/RaylensExporterDown.md")
        firing_instances = {
            a["labels"]["instance"] for n in sink.notifications() for a in n["alerts"] if a["status"] == "firing"
        }
        assert healthy.address not in firing_instances
        # The same alert is visible through Alertmanager's API, as `raylens status` reads it.
        assert any(a["labels"]["alertname"] == "RaylensExporterDown" for a in alertmanager.alerts())
