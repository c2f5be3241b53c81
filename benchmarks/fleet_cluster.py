"""The cluster-level series of the synthetic fleet: the raylens ``ray`` and ``cost`` collectors
(one exporter per Ray cluster, on the head), with the per-node rows they hold for every node, the
cost allocations, budgets and quotas, workspace events, savings recommendations, and per-job series.
Label names are the collectors' own (``tests/test_fleet.py`` compares them with the real ones).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from fleet_model import COST_KINDS, DAY, NODE_TYPES, PROJECTS, SESSION, TEAMS, USERS, Fleet, Series, labels


def cluster_series(fleet: Fleet, rng: random.Random) -> Iterator[tuple[str, Series]]:
    """Once per cluster: the raylens ``ray`` and ``cost`` collectors on the head (job raylens),
    Ray's head-only series (actors, placement groups, autoscaler) and Serve, Data and Train."""
    head = fleet.nodes[0]
    exporter = labels(instance=f"{head.ip}:9966", job="raylens")
    whole = (fleet.start, fleet.end)

    def series(name: str, text: str, shape: tuple[str, float, float], life: tuple[float, float] = whole):
        return name, Series(f"{exporter},{text}" if text else exporter, shape, *life)

    session = f'SessionName="{SESSION}"'
    for node in fleet.nodes:
        node_type, life = node.type, (node.start, node.end)
        where = labels(NodeAddress=node.ip, SessionName=SESSION, ip=node.ip, node_id=node.node_id)
        info = labels(
            NodeAddress=node.ip,
            SessionName=SESSION,
            instance_type=node_type.name,
            ip=node.ip,
            is_head=str(node.is_head).lower(),
            market=node.market,
            node_id=node.node_id,
            node_name="",
            node_type=node_type.name,
        )
        yield series("raylens_ray_node_info", info, ("k", 1, 0), life)
        yield series("raylens_ray_node_up", where, ("k", 1, 0), life)
        memory = node_type.memory_gib * 2**30
        busy = rng.uniform(0.1, 0.9)
        resources = [("CPU", node_type.cpus), ("memory", memory * 0.7), ("object_store_memory", memory * 0.3)]
        if node_type.gpus:
            resources.append(("GPU", node_type.gpus))
        for resource, capacity in resources:
            yield series(
                "raylens_ray_node_resource_capacity", f'{where},resource="{resource}"', ("k", capacity, 0), life
            )
            yield series(
                "raylens_ray_node_resource_used", f'{where},resource="{resource}"', ("g", capacity * busy, 0.3), life
            )
        store = memory * 0.3
        yield series("raylens_ray_object_store_used_bytes", where, ("g", store * busy, 0.3), life)
        yield series("raylens_ray_object_store_capacity_bytes", where, ("k", store, 0), life)
        yield series("raylens_ray_object_store_pressure_ratio", where, ("g", busy, 0.3), life)
        yield series("raylens_ray_object_store_spilled_bytes_total", where, ("c", 1e5 * busy, 0), life)
        yield series("raylens_ray_object_store_restored_bytes_total", where, ("c", 5e4 * busy, 0), life)
        price = node_type.usd_per_hour * (0.35 if node.market == "spot" else 1.0) / 3600
        priced = labels(instance_type=node_type.name, market=node.market, node_id=node.node_id)
        for kind, share in zip(COST_KINDS, (1.0, 0.05, 0.01), strict=True):
            yield series(
                "raylens_cost_node_dollars_total", f'cost_kind="{kind}",{priced}', ("c", price * share, 0), life
            )
            yield series(
                "raylens_cost_node_dollars_per_second", f'cost_kind="{kind}",{priced}', ("g", price * share, 0.05), life
            )
        for resource, share in (("cpu", 0.5), ("gpu", 0.4), ("memory", 0.1)):
            yield series(
                "raylens_cost_node_resource_dollars_per_second",
                f'node_id="{node.node_id}",resource="{resource}"',
                ("k", price * share, 0),
                life,
            )
        node_info = labels(
            cloud="aws",
            instance_type=node_type.name,
            market=node.market,
            node_id=node.node_id,
            pricing_source="catalog",
            region="us-east-1",
        )
        yield series("raylens_cost_node_info", node_info, ("k", 1, 0), life)
    yield from _cluster_totals(fleet, series, session)
    yield from _jobs(fleet, series)


def _cluster_totals(fleet: Fleet, series, session: str) -> Iterator[tuple[str, Series]]:
    yield series("raylens_ray_up", "", ("k", 1, 0))
    for node_type in NODE_TYPES:
        for market in ("on_demand", "spot"):
            count = sum(1 for node in fleet.nodes if node.type is node_type and node.market == market) / 4
            nodes = labels(SessionName=SESSION, market=market, node_type=node_type.name, state="ALIVE")
            yield series("raylens_ray_nodes", nodes, ("g", max(count, 1), 0.1))
        removal = labels(SessionName=SESSION, market="spot", node_type=node_type.name, reason="preempted")
        yield series("raylens_ray_node_removals_total", removal, ("c", 1e-4, 0))
    for status, count in (("RUNNING", 40), ("SUCCEEDED", 500), ("FAILED", 20)):
        yield series("raylens_ray_jobs", f'{session},status="{status}"', ("g", count, 0.2))
    for error_type in ("TASK_EXECUTION_EXCEPTION", "WORKER_DIED"):
        yield series("raylens_ray_task_failures_total", f'{session},error_type="{error_type}"', ("c", 0.01, 0))
    for collector in ("cost", "ray"):
        yield series("raylens_scrape_collector_success", f'collector="{collector}"', ("k", 1, 0))
    # Workspace events (the exporter's events recorder): spot reclaims and jobs coming and going.
    for kind, cause, rate in (
        ("node_preempted", "autoscaler_drain_preempted", 2e-5),
        ("node_joined", "", 2e-5),
        ("job_started", "", 1e-3),
        ("job_succeeded", "", 9e-4),
        ("job_failed", "task_execution_exception", 5e-5),
    ):
        yield series("raylens_ray_events_total", labels(SessionName=SESSION, cause=cause, kind=kind), ("c", rate, 1))
    yield from _recommendations(fleet, series)
    yield series("raylens_cost_unpriced_nodes", "", ("k", 0, 0))
    yield series("raylens_cost_state_save_errors_total", "", ("c", 0, 0))
    yield series("raylens_cost_state_set_aside_files", "", ("k", 0, 0))
    spend_rate = sum(node.type.usd_per_hour for node in fleet.nodes if node.start == fleet.start) / 3600
    for number, user in enumerate(USERS):
        project, team = PROJECTS[number % 20], TEAMS[number % 10]
        for kind, share in zip(COST_KINDS, (1.0, 0.05, 0.01), strict=True):
            who = labels(cost_kind=kind, project=project, team=team, user=user, workload="train")
            rate = spend_rate * share / 120
            yield series("raylens_cost_allocation_dollars_total", who, ("c", rate, 0))
            yield series("raylens_cost_allocation_dollars_per_second", who, ("g", rate, 0.3))
    for kind, share in zip(COST_KINDS, (1.0, 0.05, 0.01), strict=True):
        idle = labels(cost_kind=kind, project="__idle__", team="__idle__", user="__idle__", workload="__idle__")
        yield series("raylens_cost_allocation_dollars_total", idle, ("c", spend_rate * share / 6, 0))
        yield series("raylens_cost_allocation_dollars_per_second", idle, ("g", spend_rate * share / 6, 0.3))
    for application in ("chat", "embed", "rerank"):
        yield series(
            "raylens_cost_serve_deployment_dollars_per_second",
            labels(application=application, deployment="Model"),
            ("g", 0.01, 0.2),
        )
    budgets = [("org-monthly", "org", "", "month", 5e5), ("vision-daily", "project", "project-01", "day", 2e3)]
    for name, scope, match, period, amount in budgets:
        budget = labels(budget=name, match=match, period=period, scope=scope)
        length = 30 * DAY if period == "month" else DAY
        yield series("raylens_budget_amount_dollars", budget, ("k", amount, 0))
        yield series("raylens_budget_spend_dollars", budget, ("g", amount * 0.5, 0.5))
        yield series("raylens_budget_period_start_timestamp_seconds", budget, ("k", fleet.start, 0))
        yield series("raylens_budget_period_end_timestamp_seconds", budget, ("k", fleet.start + length, 0))
        for threshold in ("50", "80", "100"):
            yield series(
                "raylens_budget_threshold_ratio", f'{budget},threshold="{threshold}"', ("k", int(threshold) / 100, 0)
            )
    for user in USERS[:20]:
        quota = labels(instance_type="", match=user, quota="gpus-per-user", resource="gpus", scope="user")
        yield series("raylens_quota_limit", quota, ("k", 16, 0))
        yield series("raylens_quota_usage", quota, ("g", 8, 0.5))


def _recommendations(fleet: Fleet, series) -> Iterator[tuple[str, Series]]:
    """The recommend collector's advice: idle GPU nodes to release, on-demand GPU nodes to move to spot."""
    for node in fleet.nodes:
        if not node.type.gpus or node.start != fleet.start:
            continue
        if node.slot % 25 == 5:
            kind, action, alternative, saving = "idle_gpu", "release the node", "", node.type.usd_per_hour
        elif node.market == "on_demand" and node.slot % 10 == 1:
            kind, action, alternative, saving = "spot", "move to spot", "spot", node.type.usd_per_hour * 0.65
        else:
            continue
        target = labels(kind=kind, target=node.node_id, target_type="node")
        summary = f"{node.type.name} {node.node_id[:8]}: {kind.replace('_', ' ')} saves ${saving:.2f}/h"
        info = labels(action=action, alternative=alternative, instance_type=node.type.name, summary=summary)
        yield series("raylens_recommendation_savings_dollars_per_hour", target, ("k", saving, 0))
        yield series("raylens_recommendation_info", f"{target},{info}", ("k", 1, 0))


def _jobs(fleet: Fleet, series) -> Iterator[tuple[str, Series]]:
    for job_id, start, end, user, project, team in fleet.jobs:
        life = (max(start, fleet.start), min(end, fleet.end))
        if life[1] <= life[0]:
            continue
        submission = f"raysubmit_{job_id}"
        job = labels(SessionName=SESSION, job_id=job_id, submission_id=submission)
        info = labels(
            SessionName=SESSION,
            entrypoint="python train.py",
            job_id=job_id,
            project=project,
            submission_id=submission,
            team=team,
            type="SUBMISSION",
            user=user,
            workload="train",
        )
        yield series("raylens_ray_job_info", info, ("k", 1, 0), life)
        yield series("raylens_ray_job_status", f'{job},status="RUNNING"', ("k", 1, 0), life)
        yield series("raylens_ray_job_duration_seconds", job, ("c", 1, 0), life)
        for resource, amount in (("CPU", 16), ("GPU", 2)):
            held = labels(SessionName=SESSION, job_id=job_id, resource=resource)
            yield series("raylens_ray_job_resources_held", held, ("g", amount, 0.2), life)
        cost = labels(job_id=job_id, project=project, submission_id=submission, team=team, user=user)
        yield series("raylens_cost_job_dollars_total", cost, ("c", 0.002, 0), life)
        yield series("raylens_cost_job_dollars_per_second", cost, ("g", 0.002, 0.2), life)
