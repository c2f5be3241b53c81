"""Ray Serve: per application and deployment, how much traffic, how many errors, how slow, how many
replicas, how much queueing, and what a thousand requests cost."""

from vocabulary import (
    ANY_IS_BAD,
    COUNT,
    DATASOURCE,
    DOLLARS,
    GREEN,
    MILLISECONDS,
    NONE,
    ORANGE,
    QUARTER,
    RATIO,
    RAY_SESSION,
    RED,
    REQUESTS_PER_SECOND,
    SATURATION,
    SECONDS,
    SESSION,
    THIRD,
    Board,
    Query,
    Row,
    Variable,
    heatmap,
    stat,
    states,
    steps,
    table,
    timeseries,
)

APPLICATION = Variable(
    "application",
    "Application",
    f"label_values(ray_serve_deployment_replica_healthy{{{RAY_SESSION}}}, application)",
)
DEPLOYMENT = Variable(
    "deployment",
    "Deployment",
    f'label_values(ray_serve_deployment_replica_healthy{{{RAY_SESSION},application=~"$application"}}, deployment)',
)
APP = f'{RAY_SESSION},application=~"$application"'
# Blackbox probes of each route (Prometheus' serve-probe job, targets from `raylens sd`).
PROBE_SELECTOR = 'job="serve-probe",application=~"$application"'
PROBE = f"probe_success{{{PROBE_SELECTOR}}}"
DEPLOY = f'{APP},deployment=~"$deployment"'
ERROR_RATIO = steps("green", (0.01, "orange"), (0.05, "red"))
APPLICATION_STATES = states(
    {
        0: ("UNKNOWN", "text"),
        1: ("DEPLOY_FAILED", "red"),
        2: ("UNHEALTHY", "red"),
        3: ("NOT_STARTED", "yellow"),
        4: ("DELETING", "yellow"),
        5: ("DEPLOYING", "blue"),
        6: ("RUNNING", "green"),
    }
)


def requests_rate(by: str) -> str:
    return f"sum by ({by}) (rate(ray_serve_num_http_requests_total{{{APP}}}[$__rate_interval]))"


def latency_quantile(quantile: float) -> Query:
    return Query(
        f"histogram_quantile({quantile}, sum by (le, application) "
        f"(rate(ray_serve_http_request_latency_ms_bucket{{{APP}}}[$__rate_interval])))",
        f"p{int(quantile * 100)} {{{{application}}}}",
    )


dashboard = Board(
    key="ray_serve",
    description="Ray Serve from Ray's ray_serve_* metrics: traffic, errors and latency at the HTTP proxy "
    "per application, then per deployment: replicas, queues, processing latency and cost per 1k requests.",
    variables=[DATASOURCE, SESSION, APPLICATION, DEPLOYMENT],
    rows=[
        Row(
            "Applications",
            [
                table(
                    "Application status",
                    "Is every Serve application RUNNING?",
                    Query(f"max by (application) (ray_serve_application_status{{{APP}}})"),
                    NONE,
                    columns={"application": "Application", "Value": "Status"},
                    mappings=APPLICATION_STATES,
                    width=THIRD,
                    height=6,
                ),
                stat(
                    "Requests per second",
                    "How much HTTP traffic are the selected applications serving now?",
                    Query(f"sum(rate(ray_serve_num_http_requests_total{{{APP}}}[$__rate_interval]))"),
                    REQUESTS_PER_SECOND,
                    sparkline=True,
                    width=THIRD,
                    height=6,
                ),
                stat(
                    "Error ratio",
                    "What share of requests failed (HTTP 5xx and handler errors)?",
                    Query(
                        f"sum(rate(ray_serve_num_http_error_requests_total{{{APP}}}[$__rate_interval]))"
                        f" / sum(rate(ray_serve_num_http_requests_total{{{APP}}}[$__rate_interval]))"
                    ),
                    RATIO,
                    decimals=2,
                    thresholds=ERROR_RATIO,
                    sparkline=True,
                    width=THIRD,
                    height=6,
                ),
                timeseries(
                    "Requests per second by application",
                    "Which application gets the traffic, and is it changing?",
                    Query(requests_rate("application"), "{{application}}"),
                    REQUESTS_PER_SECOND,
                    stack=True,
                ),
                timeseries(
                    "Error ratio by application",
                    "Which application is returning errors, and how many?",
                    Query(
                        "sum by (application) (rate(ray_serve_num_http_error_requests_total"
                        f"{{{APP}}}[$__rate_interval])) / {requests_rate('application')}",
                        "{{application}}",
                    ),
                    RATIO,
                    minimum=0,
                    thresholds=ERROR_RATIO,
                    show_thresholds=True,
                ),
                timeseries(
                    "Latency quantiles",
                    "How long do requests take end to end at the proxy: typical (p50) and tail (p95, p99)?",
                    [latency_quantile(0.5), latency_quantile(0.95), latency_quantile(0.99)],
                    MILLISECONDS,
                ),
                heatmap(
                    "Latency distribution",
                    "Is latency bimodal or drifting (slow replicas, cold starts)?",
                    Query(f"sum by (le) (rate(ray_serve_http_request_latency_ms_bucket{{{APP}}}[$__rate_interval]))"),
                    MILLISECONDS,
                ),
            ],
        ),
        Row(
            "Deployments",
            [
                timeseries(
                    "Requests per second by deployment",
                    "How is the traffic spread over deployments (including calls between deployments)?",
                    Query(
                        "sum by (application, deployment) (rate(ray_serve_deployment_request_counter_total"
                        f"{{{DEPLOY}}}[$__rate_interval]))",
                        "{{application}}/{{deployment}}",
                    ),
                    REQUESTS_PER_SECOND,
                    width=THIRD,
                ),
                timeseries(
                    "Errors per second by deployment",
                    "Which deployment raises exceptions, and of what type?",
                    Query(
                        "sum by (application, deployment, exception_type) (rate("
                        f"ray_serve_deployment_error_counter_total{{{DEPLOY}}}[$__rate_interval]))",
                        "{{deployment}} {{exception_type}}",
                    ),
                    REQUESTS_PER_SECOND,
                    width=THIRD,
                ),
                timeseries(
                    "Processing latency p95 by deployment",
                    "How long does each deployment's handler take, without queueing at the proxy?",
                    Query(
                        "histogram_quantile(0.95, sum by (le, application, deployment) (rate("
                        f"ray_serve_deployment_processing_latency_ms_bucket{{{DEPLOY}}}[$__rate_interval])))",
                        "{{application}}/{{deployment}}",
                    ),
                    MILLISECONDS,
                    width=THIRD,
                ),
                timeseries(
                    "Healthy and target replicas",
                    "Does each deployment have the replicas the autoscaler wants, and are they healthy?",
                    [
                        Query(
                            f"sum by (application, deployment) (ray_serve_deployment_replica_healthy{{{DEPLOY}}})",
                            "healthy {{deployment}}",
                        ),
                        Query(
                            f"max by (application, deployment) (ray_serve_autoscaling_target_replicas{{{DEPLOY}}})",
                            "target {{deployment}}",
                        ),
                    ],
                    COUNT,
                    width=QUARTER,
                ),
                timeseries(
                    "Queued requests",
                    "Are requests waiting at the handles because replicas are saturated?",
                    Query(
                        f"sum by (application, deployment) (ray_serve_deployment_queued_queries{{{DEPLOY}}})",
                        "{{deployment}}",
                    ),
                    COUNT,
                    width=QUARTER,
                ),
                timeseries(
                    "Ongoing requests per replica",
                    "How many requests is each replica working on (compare with max_ongoing_requests)?",
                    Query(
                        f"sum by (application, deployment, replica) (ray_serve_replica_processing_queries{{{DEPLOY}}})",
                        "{{replica}}",
                    ),
                    COUNT,
                    width=QUARTER,
                ),
                timeseries(
                    "Replica utilisation",
                    "How busy is each replica (share of time processing requests)?",
                    Query(
                        # Ray reports 0-100: divided here so the panel is a ratio like every other.
                        "max by (application, deployment, replica) "
                        f"(ray_serve_replica_utilization_percent{{{DEPLOY}}}) / 100",
                        "{{replica}}",
                    ),
                    RATIO,
                    minimum=0,
                    thresholds=SATURATION,
                    width=QUARTER,
                ),
                timeseries(
                    "Replica starts",
                    "Are replicas restarting (crashes, failed health checks, scaling)?",
                    Query(
                        "sum by (application, deployment) (increase("
                        f"ray_serve_deployment_replica_starts_total{{{DEPLOY}}}[$__rate_interval]))",
                        "{{deployment}}",
                    ),
                    COUNT,
                    bars=True,
                    width=THIRD,
                ),
                timeseries(
                    "Cost per 1k requests",
                    "What does serving a thousand requests cost, per application?",
                    Query(
                        "sum by (application) (raylens_cost_serve_deployment_dollars_per_second"
                        f'{{application=~"$application"}}) * 1000 / {requests_rate("application")}',
                        "{{application}}",
                    ),
                    DOLLARS,
                    decimals=4,
                    width=THIRD * 2,
                ),
            ],
        ),
        Row(
            "Uptime from outside (blackbox probes)",
            [
                stat(
                    "Routes down now",
                    "Which Serve routes fail their probe right now (no 2xx from outside)?",
                    Query(f"count({PROBE} == 0) or vector(0)"),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    color_background=True,
                    width=QUARTER,
                ),
                table(
                    "Uptime by route",
                    "How available was each route over 30 days, the last day and the last hour?",
                    [
                        Query(f"instance:probe_success:avg_over_time30d{{{PROBE_SELECTOR}}}"),
                        Query(f"instance:probe_success:avg_over_time1d{{{PROBE_SELECTOR}}}"),
                        Query(f"instance:probe_success:avg_over_time1h{{{PROBE_SELECTOR}}}"),
                    ],
                    RATIO,
                    columns={"instance": "URL", "Value #A": "30 days", "Value #B": "1 day", "Value #C": "1 hour"},
                    hide=("__name__", "job", "route_prefix"),
                    decimals=3,
                    thresholds=steps(RED, (0.99, ORANGE), (0.995, GREEN)),
                    sort_by="30 days",
                    width=QUARTER * 3,
                ),
                timeseries(
                    "Probe success",
                    "When did routes stop answering (share of successful probes, 5-minute windows)?",
                    Query(
                        f"instance:probe_success:avg_over_time5m{{{PROBE_SELECTOR}}}", "{{application}} {{instance}}"
                    ),
                    RATIO,
                    minimum=0,
                    maximum=1,
                ),
                timeseries(
                    "Probe duration",
                    "How long does a route take to answer a probe (connect to last byte)?",
                    Query(
                        f"instance:probe_duration_seconds:avg_over_time5m{{{PROBE_SELECTOR}}}",
                        "{{application}} {{instance}}",
                    ),
                    SECONDS,
                ),
            ],
        ),
    ],
)
