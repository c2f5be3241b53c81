"""Over-provisioned Ray Serve deployments: more healthy replicas than the load ever needed.

Load is Ray Serve's own autoscaling signal, ongoing requests (``ray_serve_replica_processing_queries``
summed over the deployment's replicas), at the ``rightsizing_quantile_percent`` quantile over
``serve_window``. Needed replicas = max(``serve_min_replicas``, ceil(load / target ongoing requests per
replica)); the surplus is the healthy replicas now minus that, and the saving is the surplus' share of
the deployment's current cost (``raylens_cost_serve_deployment_dollars_per_second``). Requests per
second are shown as context. Set ``serve_target_ongoing_requests`` to your deployments' value.
"""

from __future__ import annotations

import math

from raylens.config import RecommendationsConfig
from raylens.recommend.model import Evidence, Recommendation
from raylens.recommend.readings import Readings, narrowed

KEY = ("application", "deployment")


def queries(config: RecommendationsConfig) -> dict[str, str]:
    quantile = config.rightsizing_quantile_percent / 100
    window = config.serve_window
    return {
        "replicas": "sum by (application, deployment) (ray_serve_deployment_replica_healthy{{m}})",
        "load": f"quantile_over_time({quantile:g}, sum by (application, deployment) "
        f"(ray_serve_replica_processing_queries{{{{m}}}})[{window}:1m])",
        "qps": "sum by (application, deployment) "
        f"(rate(ray_serve_deployment_request_counter_total{{{{m}}}}[{window}]))",
        "cost": "sum by (application, deployment) (raylens_cost_serve_deployment_dollars_per_second{{m}}) * 3600",
    }


def recommend_serve(readings: Readings, config: RecommendationsConfig) -> list[Recommendation]:
    templates = queries(config)
    replicas = readings.by(templates["replicas"], *KEY)
    if not replicas:
        return []
    load = readings.by(templates["load"], *KEY)
    qps = readings.by(templates["qps"], *KEY)
    cost = readings.by(templates["cost"], *KEY)
    target = config.serve_target_ongoing_requests
    found = []
    for key, healthy in replicas.items():
        if key not in load or key not in cost or healthy <= 0:
            continue
        needed = max(config.serve_min_replicas, math.ceil(round(load[key] / target, 6)))
        surplus = math.floor(healthy) - needed
        if surplus < 1:
            continue
        savings = cost[key] * surplus / healthy
        application, deployment = key
        where = list(zip(KEY, key, strict=True))
        found.append(
            Recommendation(
                kind="serve_overprovisioned",
                target=f"{application}/{deployment}",
                target_type="deployment",
                summary=f"Serve deployment {application}/{deployment} runs {healthy:g} replicas; at most "
                f"{load[key]:.2f} requests were in flight ({config.rightsizing_quantile_percent:g}th percentile, "
                f"{qps.get(key, 0.0):.2f} req/s) over {config.serve_window}, which {needed} replica(s) at {target:g} "
                f"ongoing requests each handle.",
                action=f"Lower num_replicas (or autoscaling min_replicas) of {deployment} to {needed}, or let Serve "
                "autoscale it with target_ongoing_requests.",
                savings_dollars_per_hour=savings,
                evidence=(
                    Evidence("healthy replicas now", narrowed(templates["replicas"], where), healthy),
                    Evidence("requests in flight (all replicas)", narrowed(templates["load"], where), load[key]),
                    Evidence("requests per second", narrowed(templates["qps"], where), qps.get(key, 0.0)),
                    Evidence("deployment cost now, US dollars per hour", narrowed(templates["cost"], where), cost[key]),
                ),
                details={"replicas": healthy, "needed": needed, "surplus": surplus},
            )
        )
    return found
