"""Auto-termination: clusters on which no job has held anything for ``auto_termination_idle_for``.

A cluster is one cost exporter target (its ``job`` and ``instance`` labels; shown by its ``cluster``
target label where there is one). Busy means some attribution key other than ``__idle__`` had a
spend rate above zero; the last busy moment is found at one-minute resolution over
``auto_termination_lookback`` (a cluster never busy in it counts as idle since its first sample
there). The recommendation carries the spend since idleness began (``increase`` of the node
counters over exactly that time) and saves the cluster's whole current rate.
"""

from __future__ import annotations

import math

from raylens.config import RecommendationsConfig
from raylens.recommend.model import Evidence, Recommendation
from raylens.recommend.readings import Readings, duration_seconds, narrowed

KEY = ("job", "instance")


def queries(config: RecommendationsConfig) -> dict[str, str]:
    lookback = config.auto_termination_lookback
    return {
        "rate": "sum by (job, instance, cluster) (raylens_cost_node_dollars_per_second{{m}}) * 3600",
        "last_busy": "max by (job, instance) (max_over_time(timestamp("
        f'raylens_cost_allocation_dollars_per_second{{project!="__idle__"{{m}}}} > 0)[{lookback}:1m]))',
        "first_seen": "min by (job, instance) (min_over_time(timestamp("
        f"raylens_cost_accounted_until_timestamp_seconds{{{{m}}}})[{lookback}:1m]))",
    }


def spend_since(seconds: int) -> str:
    return f"sum by (job, instance) (increase(raylens_cost_node_dollars_total{{{{m}}}}[{seconds}s]))"


def recommend_auto_termination(readings: Readings, config: RecommendationsConfig) -> list[Recommendation]:
    templates = queries(config)
    rates = readings.by(templates["rate"], "job", "instance", "cluster")
    if not rates:
        return []
    last_busy = readings.by(templates["last_busy"], *KEY)
    first_seen = readings.by(templates["first_seen"], *KEY)
    idle_for = duration_seconds(config.auto_termination_idle_for)
    found = []
    for (job, instance, cluster), rate in rates.items():
        key = (job, instance)
        began = last_busy.get(key, first_seen.get(key))
        if rate <= 0 or began is None:
            continue
        idle_seconds = math.floor(readings.at - began)
        if idle_seconds < idle_for:
            continue
        where = [("job", job), ("instance", instance)]
        spent_query = spend_since(idle_seconds)
        spent = readings.by(spent_query, *KEY).get(key, 0.0)
        hours = idle_seconds / 3600
        target = cluster or instance
        never = key not in last_busy
        since = f"at least {hours:.1f} h (the whole look-back)" if never else f"{hours:.1f} h"
        found.append(
            Recommendation(
                kind="auto_termination",
                target=target,
                target_type="cluster",
                summary=f"Cluster {target}: no job has held anything for {since}; it has cost ${spent:,.2f} since "
                f"and costs ${rate:.4g}/h now.",
                action="Terminate the cluster (`ray down`, delete the RayCluster) or give it an idle timeout "
                "(autoscaler idle_timeout_minutes, min_workers 0, KubeRay suspend).",
                savings_dollars_per_hour=rate,
                evidence=(
                    Evidence("spend rate now, US dollars per hour", narrowed(templates["rate"], where), rate),
                    Evidence(
                        "last time a job held anything (Unix seconds)"
                        if not never
                        else "first sample in the look-back (never busy in it)",
                        narrowed(templates["first_seen" if never else "last_busy"], where),
                        began,
                    ),
                    Evidence("spend since then, US dollars", narrowed(spent_query, where), spent),
                ),
                details={"idle_seconds": idle_seconds, "spent_while_idle_dollars": spent, "idle_since_unix": began},
            )
        )
    return found
