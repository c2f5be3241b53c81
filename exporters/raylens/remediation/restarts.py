"""Self-healing restarts through Ray's own APIs: failed jobs resubmitted, Serve deployments rolled.

A failed job is resubmitted with its entrypoint, runtime_env and metadata as
``<original>-restart-<n>`` (metadata ``raylens_restart_of``), so the restart chain stays one target
for backoff and limits. Ray's job details do not include entrypoint resources
(``entrypoint_num_cpus`` ...): a job that set them is resubmitted without; use run-command there.

A Serve deployment is restarted by redeploying its application's config (``PUT
/api/serve/applications/``) with a restart marker in the deployment's ``runtime_env.env_vars``:
Serve treats that as a new version and replaces the replicas one by one, keeping the deployment
serving. Only applications deployed from a config (``serve deploy``, the REST API, KubeRay's
RayService) can be redeployed that way; Serve's REST API cannot restart one started with
``serve.run``, and such alerts are skipped with that reason.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from raylens.remediation.actions import ActionContext, ActionFailed, Plan, Skip
from raylens.remediation.policy import restart_root
from raylens.remediation.ray_api import RayDashboard

RESTART_MARKER = "RAYLENS_RESTARTED_AT"
# Fields of the instance details that a PUT accepts back unchanged.
_DEPLOY_FIELDS = ("proxy_location", "http_options", "grpc_options", "target_capacity")


def restart_failed_job(context: ActionContext) -> Plan:
    submission_id = context.labels["submission_id"]
    dashboard = context.ray()
    job = dashboard.job(submission_id)
    status = job.get("status")
    if status != "FAILED":
        raise Skip(f"job {submission_id} is {status}, not FAILED")
    root = restart_root(submission_id)
    pattern = re.compile(re.escape(root) + r"-restart-(\d+)$")
    earlier = [
        int(match.group(1)) for other in dashboard.jobs() if (match := pattern.match(str(other.get("submission_id"))))
    ]
    new_id = f"{root}-restart-{max(earlier, default=0) + 1}"
    metadata = {**(job.get("metadata") or {}), "raylens_restart_of": root}
    if context.decision.incident_id is not None:
        metadata["raylens_incident"] = str(context.decision.incident_id)
    runtime_env = job.get("runtime_env") or None
    plan = Plan()
    plan.detail.update(failed_job=submission_id, message=(job.get("message") or "")[:300], new_submission_id=new_id)

    def submit() -> str | None:
        return f"submission id {dashboard.submit_job(job['entrypoint'], new_id, metadata, runtime_env)}"

    plan.add(f"resubmit FAILED job {submission_id} as {new_id}: {job['entrypoint']}", submit)
    return plan


def restart_serve_deployment(context: ActionContext) -> Plan:
    application = context.labels["application"]
    dashboard = context.ray()
    instance = dashboard.serve()
    applications: dict[str, Any] = instance.get("applications") or {}
    details = applications.get(application)
    if details is None:
        raise Skip(f"Serve has no application {application}")
    if not details.get("deployed_app_config"):
        raise Skip(
            f"application {application} was started with serve.run; Serve's REST API can only restart applications "
            "deployed from a config (serve deploy), so map this alert to a run-command instead"
        )
    deployments = details.get("deployments") or {}
    wanted = [context.labels["deployment"]] if context.labels.get("deployment") else sorted(deployments)
    missing = [name for name in wanted if name not in deployments]
    if missing:
        raise Skip(f"application {application} has no deployment {', '.join(missing)}")
    marker = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = _redeploy_config(instance, application, {name: deployments[name] for name in wanted}, marker)
    old_replicas = {replica["replica_id"] for name in wanted for replica in deployments[name].get("replicas") or []}
    plan = Plan()
    plan.detail.update(application=application, deployments=wanted, replaced_replicas=sorted(old_replicas))

    def redeploy() -> str | None:
        dashboard.deploy_serve(config)
        return _wait_rolled(dashboard, application, wanted, old_replicas, context.deadline)

    plan.add(
        f"roll deployment {', '.join(wanted)} of Serve application {application} (PUT with {RESTART_MARKER})", redeploy
    )
    return plan


def _redeploy_config(instance: dict[str, Any], application: str, deployments: dict[str, Any], marker: str) -> dict:
    """Every config-deployed application as it is (a PUT replaces them all), with the marker added."""
    config: dict[str, Any] = {key: instance[key] for key in _DEPLOY_FIELDS if instance.get(key) is not None}
    config["applications"] = []
    for name, details in sorted((instance.get("applications") or {}).items()):
        deployed = details.get("deployed_app_config")
        if not deployed:
            continue
        deployed = copy.deepcopy(deployed)
        if name == application:
            overrides = {entry["name"]: entry for entry in deployed.setdefault("deployments", [])}
            for deployment, live in deployments.items():
                entry = overrides.get(deployment)
                if entry is None:
                    entry = {"name": deployment}
                    deployed["deployments"].append(entry)
                # A config's ray_actor_options replace the code's wholesale: start from what runs now.
                options = copy.deepcopy(
                    entry.get("ray_actor_options") or live["deployment_config"].get("ray_actor_options") or {}
                )
                runtime_env = options.setdefault("runtime_env", {})
                runtime_env.setdefault("env_vars", {})[RESTART_MARKER] = marker
                entry["ray_actor_options"] = options
        config["applications"].append(deployed)
    return config


def _wait_rolled(
    dashboard: RayDashboard, application: str, deployments: list[str], old_replicas: set[str], deadline: float
) -> str:
    """Until each deployment is HEALTHY again and none of the replaced replicas is left."""
    last = "no answer yet"
    while time.monotonic() < deadline:
        details = (dashboard.serve().get("applications") or {}).get(application) or {}
        live = details.get("deployments") or {}
        states = {name: (live.get(name) or {}).get("status") for name in deployments}
        replicas = {
            replica["replica_id"]
            for name in deployments
            for replica in (live.get(name) or {}).get("replicas") or []
            if replica.get("state") == "RUNNING"
        }
        if all(state == "HEALTHY" for state in states.values()) and replicas and not replicas & old_replicas:
            return f"{len(replicas)} new replicas running"
        last = f"status {states}, {len(replicas & old_replicas)} old replicas still running"
        time.sleep(1.0)
    raise ActionFailed(f"rollout not finished before the action deadline: {last}")
