"""``raylens remediate``: the HTTP service Alertmanager's webhook posts to.

Request path: authenticate (bearer token or basic auth; 401), refuse bodies without a length (411)
or over 1 MiB (413) unread, parse the v4 payload (400), then record the delivery as an incident
update and decide, per firing alert, whether an action runs (``policy.py``). Every request, refused
or not, is audited. Actions run on a small worker pool after the answer, so Alertmanager never waits
on a cluster; their results land in the audit log, the incident timeline and the metrics.

Endpoints: ``POST /webhook`` (Alertmanager), ``GET /metrics``, ``GET /healthz`` (no auth: it says
only "ok").
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import disable_created_metrics, make_wsgi_app

from raylens.audit import record
from raylens.config import RaylensConfig, parse_listen_address
from raylens.remediation.actions import ActionContext, ActionResult, run_action
from raylens.remediation.auth import Authenticator
from raylens.remediation.escalation import ACTOR, Escalator
from raylens.remediation.impact import compute_impact
from raylens.remediation.incidents import apply_notification
from raylens.remediation.metrics import RemediationMetrics
from raylens.remediation.payload import Notification, PayloadError, parse_notification
from raylens.remediation.policy import RAY_ACTIONS, Decision, Policy
from raylens.remediation.prometheus import Prometheus
from raylens.remediation.ray_api import RayDashboard
from raylens.remediation.store import Store
from raylens.web.server import StartResponse, WsgiApp, make_http_server
from raylens.web.webconfig import WebConfig

log = logging.getLogger("raylens.remediation")

MAX_BODY_BYTES = 1024 * 1024
WEBHOOK_PATH = "/webhook"


class RemediationService:
    def __init__(self, config: RaylensConfig, store: Store, authenticator: Authenticator):
        self.config = config.remediation
        self.slo_percent = config.alerts.serve_availability_slo_percent
        self.store = store
        self.authenticator = authenticator
        self.policy = Policy(self.config, store)
        self.metrics = RemediationMetrics(self.config.dry_run, self._count_open)
        self.prometheus = Prometheus(self.config.prometheus_url) if self.config.prometheus_url else None
        self.escalator = Escalator(self.config, config.alerts.runbook_url_base, store, self.metrics)
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="remediation")
        self._dashboards: dict[str, RayDashboard] = {}

    def _count_open(self) -> dict[str, int]:
        rows = self.store.query("SELECT severity, count(*) AS n FROM incidents WHERE status = 'open' GROUP BY severity")
        return {row["severity"]: row["n"] for row in rows}

    def recover(self) -> None:
        """Audit actions a previous process left unfinished (it stopped or crashed mid-action)."""
        for action in self.store.interrupt_unfinished(time.time()):
            record(
                "remediation_action",
                "interrupted",
                actor=ACTOR,
                action_id=action["id"],
                remediation=action["action"],
                target=action["target"],
                reason="the service stopped before the action finished",
            )

    # --- one delivery ---

    def handle(self, notification: Notification, actor: str) -> dict[str, Any]:
        received_at = time.time()
        update = apply_notification(self.store, notification, received_at)
        incident = self.store.incident(update.incident_id)
        if update.opened:
            record(
                "incident_opened",
                actor=ACTOR,
                incident_id=update.incident_id,
                title=incident["title"] if incident else "",
            )
        if update.resolved:
            record("incident_resolved", actor=ACTOR, incident_id=update.incident_id)
            self.executor.submit(self._compute_impact, update.incident_id)
        decisions = [self._decide(notification, alert, update.incident_id, actor) for alert in notification.firing]
        return {
            "incident": update.incident_id,
            "opened": update.opened,
            "resolved": update.resolved,
            "decisions": [decision for decision in decisions if decision is not None],
        }

    def _decide(self, notification: Notification, alert: Any, incident_id: int, actor: str) -> dict[str, Any] | None:
        decision = self.policy.decide(notification, alert, incident_id)
        if decision is None:
            return None
        context = {
            "remediation": decision.action,
            "target": decision.target,
            "cluster": decision.cluster.name if decision.cluster else None,
            "alertname": alert.name,
            "fingerprint": alert.fingerprint,
            "group_key": notification.group_key,
            "incident_id": incident_id,
            "action_id": decision.action_id,
            "requested_by": actor,
        }
        if decision.duplicate_of is not None:
            earlier = decision.duplicate_of
            reason = f"already decided as action {earlier['id']} ({earlier['outcome']}): a re-delivery does nothing"
            self.metrics.actions.labels(decision.action, "duplicate").inc()
            record("remediation_action", "duplicate", actor=ACTOR, reason=reason, **context)
            return {**context, "outcome": "duplicate", "reason": reason}
        if decision.skip_reason is not None:
            self.metrics.actions.labels(decision.action, "skipped").inc()
            record("remediation_action", "skipped", actor=ACTOR, reason=decision.skip_reason, **context)
            log.info("remediation skipped", extra={**context, "reason": decision.skip_reason})
            return {**context, "outcome": "skipped", "reason": decision.skip_reason}
        if decision.defer_until is not None:
            return self._defer(decision, context)
        self.executor.submit(self._execute, decision, context)
        return {**context, "outcome": "queued", "dry_run": self.config.dry_run}

    def _defer(self, decision: Decision, context: dict[str, Any]) -> dict[str, Any]:
        assert decision.defer_until is not None
        delay = max(0.0, decision.defer_until - time.time())
        row = self.store.action_by_id(decision.action_id)
        reason = row["reason"] if row else "backoff"
        self.metrics.actions.labels(decision.action, "deferred").inc()
        record("remediation_action", "deferred", actor=ACTOR, reason=reason, **context)
        timer = threading.Timer(delay, self._resume, args=(decision, context))
        timer.daemon = True
        timer.start()
        return {**context, "outcome": "deferred", "reason": reason}

    def _resume(self, decision: Decision, context: dict[str, Any]) -> None:
        self.policy.recheck(decision)
        if decision.defer_until is not None:
            self._defer(decision, context)
        elif decision.skip_reason is not None:
            self.metrics.actions.labels(decision.action, "skipped").inc()
            record("remediation_action", "skipped", actor=ACTOR, reason=decision.skip_reason, **context)
        else:
            try:
                self.executor.submit(self._execute, decision, context)
            except RuntimeError:  # shutting down: the next start marks it interrupted
                self.policy.release(decision)

    def _dashboard(self, decision: Decision) -> RayDashboard | None:
        cluster = decision.cluster
        if cluster is None or decision.action not in RAY_ACTIONS:
            return None
        return self._dashboards.setdefault(cluster.name, RayDashboard(cluster.dashboard_url))

    def _execute(self, decision: Decision, context: dict[str, Any]) -> ActionResult:
        started = time.monotonic()
        dry_run = self.config.dry_run
        assert decision.action_id is not None
        try:
            if not dry_run:
                self.store.update_action(decision.action_id, "started", time.time())
                record("remediation_action", "started", actor=ACTOR, **context)
            action_context = ActionContext(
                decision,
                self.config,
                dry_run,
                started + self.config.action_timeout_seconds,
                self.prometheus,
                self._dashboard(decision),
            )
            result = run_action(action_context)
        except Exception as error:  # an action's bug must not kill the worker or leave the target busy
            log.exception("remediation action crashed", extra=context)
            result = ActionResult("failed", f"unexpected error: {type(error).__name__}: {error}")
        finally:
            self.policy.release(decision)
        elapsed = time.monotonic() - started
        self.store.update_action(
            decision.action_id, result.outcome, time.time(), result.reason, steps=result.steps, **result.detail
        )
        self.metrics.actions.labels(decision.action, result.outcome).inc()
        self.metrics.duration.labels(decision.action).observe(elapsed)
        record(
            "remediation_action",
            result.outcome,
            actor=ACTOR,
            reason=result.reason,
            steps=result.steps,
            detail=result.detail,
            dry_run=dry_run,
            seconds=round(elapsed, 3),
            **context,
        )
        level = logging.WARNING if result.outcome == "failed" else logging.INFO
        log.log(
            level, "remediation " + result.outcome, extra={**context, "reason": result.reason, "steps": result.steps}
        )
        return result

    def _compute_impact(self, incident_id: int) -> None:
        incident = self.store.incident(incident_id)
        if incident is None or incident["resolved_at"] is None:
            return
        figures = compute_impact(incident, self.prometheus, self.slo_percent, incident["resolved_at"])
        self.store.set_impact(incident_id, figures)

    # --- HTTP ---

    def app(self) -> WsgiApp:
        metrics_app = make_wsgi_app(self.metrics.registry)

        def refuse(start_response: StartResponse, status: str, outcome: str, reason: str, environ: dict) -> list[bytes]:
            self.metrics.webhooks.labels(outcome).inc()
            record(
                "remediation_webhook",
                "refused",
                actor=environ.get("raylens.actor", "anonymous"),
                status=int(status[:3]),
                reason=reason,
                remote=environ.get("REMOTE_ADDR"),
                method=environ.get("REQUEST_METHOD"),
                path=environ.get("PATH_INFO"),
            )
            log.warning(
                "webhook refused", extra={"status": status, "reason": reason, "remote": environ.get("REMOTE_ADDR")}
            )
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            if status.startswith("401"):
                headers.append(("WWW-Authenticate", 'Bearer realm="raylens-remediate"'))
            start_response(status, headers)
            return [f"{reason}\n".encode()]

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "/")
            if path == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"ok\n"]
            auth = self.authenticator.check(environ.get("HTTP_AUTHORIZATION"))
            if not auth.allowed:
                return refuse(start_response, "401 Unauthorized", "unauthorized", auth.actor, environ)
            environ["raylens.actor"] = auth.actor
            if path == "/metrics" and environ.get("REQUEST_METHOD") == "GET":
                return metrics_app(environ, start_response)
            if path != WEBHOOK_PATH or environ.get("REQUEST_METHOD") != "POST":
                return refuse(start_response, "404 Not Found", "not_found", f"expected POST {WEBHOOK_PATH}", environ)
            return self._webhook(environ, start_response, refuse, auth.actor)

        return app

    def _webhook(self, environ: dict[str, Any], start_response: StartResponse, refuse: Any, actor: str) -> list[bytes]:
        length_text = environ.get("CONTENT_LENGTH") or ""
        if not length_text.isdigit():
            return refuse(
                start_response, "411 Length Required", "length_required", "expected a Content-Length", environ
            )
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            reason = f"body of {length} bytes is over the {MAX_BODY_BYTES}-byte limit"
            return refuse(start_response, "413 Payload Too Large", "too_large", reason, environ)
        body = environ["wsgi.input"].read(length)
        try:
            notification = parse_notification(json.loads(body))
        except (ValueError, PayloadError) as error:
            reason = str(error) if isinstance(error, PayloadError) else f"not JSON: {error}"
            return refuse(start_response, "400 Bad Request", "malformed", reason, environ)
        self.metrics.webhooks.labels("accepted").inc()
        try:
            summary = self.handle(notification, actor)
        except Exception as error:  # the database or a bug: say so, and let Alertmanager retry
            log.exception("cannot record the notification", extra={"group_key": notification.group_key})
            record("remediation_webhook", "failed", actor=actor, group_key=notification.group_key, error=str(error))
            start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"cannot record the notification; retry\n"]
        record(
            "remediation_webhook",
            "accepted",
            actor=actor,
            remote=environ.get("REMOTE_ADDR"),
            receiver=notification.receiver,
            group_key=notification.group_key,
            status=notification.status,
            alerts=len(notification.alerts),
            firing=len(notification.firing),
            incident_id=summary["incident"],
            decisions=[(decision["remediation"], decision["outcome"]) for decision in summary["decisions"]],
        )
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(summary, default=str).encode()]


def run_remediation(
    config: RaylensConfig,
    store: Store,
    authenticator: Authenticator,
    web_config: WebConfig,
    stop: threading.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``); finish running actions before returning."""
    # Counters' *_created series only double what a scrape shows; the exporter has none either.
    disable_created_metrics()
    service = RemediationService(config, store, authenticator)
    service.recover()
    host, port = parse_listen_address(config.remediation.listen_address)
    server = make_http_server(host, port, service.app(), web_config)
    stop = stop or threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    threading.Thread(target=service.escalator.run, args=(stop,), name="escalation", daemon=True).start()
    bound_host, bound_port = server.server_address[:2]
    log.info(
        "listening",
        extra={
            "address": f"{bound_host}:{bound_port}",
            "tls": web_config.tls_server_config is not None,
            "dry_run": config.remediation.dry_run,
            "clusters": [cluster.name for cluster in config.remediation.clusters],
            "database": str(store.path),
        },
    )
    stop.wait()
    server.shutdown()
    server.server_close()
    service.executor.shutdown(wait=True)
    store.close()
