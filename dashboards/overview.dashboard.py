"""Overview: is the cluster healthy, what runs on it, what does it cost, and are we within budget?
Every other dashboard is one click away, with this time range and these variables."""

from vocabulary import (
    ANY_IS_BAD,
    BUDGET_SHARE,
    COUNT,
    DATASOURCE,
    DOLLARS,
    DOLLARS_PER_HOUR,
    HALF,
    NODE,
    NONE,
    OUR_NODE,
    RATIO,
    RAY_SESSION,
    SATURATION,
    SESSION,
    SIXTH,
    THIRD,
    WASTE,
    WASTE_SHARE,
    Board,
    Link,
    Query,
    Row,
    bargauge,
    pie,
    stat,
    table,
    timeseries,
)

dashboard = Board(
    key="overview",
    description="The front page: cluster health, nodes by type and market, jobs by status, firing "
    "alerts, cost now and period-to-date spend against budgets, with a link to every other dashboard.",
    variables=[DATASOURCE, SESSION, NODE],
    rows=[
        Row(
            "Cluster health",
            [
                stat(
                    "Ray nodes alive",
                    "How many Ray nodes are alive right now?",
                    Query(f"sum(ray_cluster_active_nodes{{{RAY_SESSION}}})"),
                    COUNT,
                    links=[Link("Ray core", "ray_core")],
                    width=SIXTH,
                ),
                stat(
                    "Scrape targets down",
                    "Is Prometheus failing to scrape any raylens exporter or Ray endpoint?",
                    Query('count(up{job=~"raylens|ray"} == 0) or vector(0)'),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    color_background=True,
                    width=SIXTH,
                ),
                stat(
                    "Collectors failing",
                    "Is any raylens collector (node, GPU, Ray, cost) failing on its last scrape?",
                    Query("count(raylens_scrape_collector_success == 0) or vector(0)"),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    color_background=True,
                    width=SIXTH,
                ),
                stat(
                    "Alerts firing",
                    "How many alerts are firing now?",
                    Query('count(ALERTS{alertstate="firing"}) or vector(0)'),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    color_background=True,
                    width=SIXTH,
                ),
                stat(
                    "CPU busy (cluster)",
                    "How busy are the cluster's CPUs overall?",
                    Query(f"avg(instance:raylens_node_cpu_utilisation:rate5m{{{OUR_NODE}}})"),
                    RATIO,
                    thresholds=SATURATION,
                    sparkline=True,
                    links=[Link("Hardware & GPU", "hardware", carry=("datasource", "node"))],
                    width=SIXTH,
                ),
                stat(
                    "GPU utilisation (cluster)",
                    "How busy are the GPUs we pay for?",
                    Query(f"avg(raylens_gpu_utilisation_ratio{{{OUR_NODE}}})"),
                    RATIO,
                    thresholds=WASTE,
                    sparkline=True,
                    links=[Link("Hardware & GPU", "hardware", carry=("datasource", "node"))],
                    width=SIXTH,
                ),
                table(
                    "Firing alerts",
                    "Which alerts are firing, how severe, and on what?",
                    Query('ALERTS{alertstate="firing"}'),
                    NONE,
                    hide=("__name__", "alertstate", "Value"),
                    columns={"alertname": "Alert", "severity": "Severity"},
                    width=THIRD * 2,
                    height=6,
                ),
                pie(
                    "Nodes by type and market",
                    "What kinds of nodes make up the cluster, on demand or spot?",
                    Query(
                        f'sum by (node_type, market) (raylens_ray_nodes{{{RAY_SESSION},state="ALIVE"}})',
                        "{{node_type}} {{market}}",
                    ),
                    COUNT,
                    height=6,
                ),
            ],
        ),
        Row(
            "Workloads",
            [
                timeseries(
                    "Running tasks and actors",
                    "How much work is on the cluster: running tasks and alive actors?",
                    [
                        Query(f'sum(ray_tasks{{{RAY_SESSION},State=~"RUNNING.*"}})', "running tasks"),
                        Query(f'sum(ray_actors{{{RAY_SESSION},Source="gcs",State=~"ALIVE.*"}})', "alive actors"),
                    ],
                    COUNT,
                    links=[Link("Ray core", "ray_core")],
                    width=THIRD,
                ),
                timeseries(
                    "Ray jobs by status",
                    "How many Ray jobs are pending, running, finished or failed?",
                    Query(f"sum by (status) (raylens_ray_jobs{{{RAY_SESSION}}})", "{{status}}"),
                    COUNT,
                    stack=True,
                    links=[Link("Logs & events", "logs_events")],
                    width=THIRD,
                ),
                timeseries(
                    "Serve requests per second",
                    "How much traffic are Serve applications handling?",
                    Query(
                        "sum by (application) (rate(ray_serve_num_http_requests_total"
                        f"{{{RAY_SESSION}}}[$__rate_interval]))",
                        "{{application}}",
                    ),
                    "reqps",
                    links=[
                        Link("Ray Serve", "ray_serve"),
                        Link("Ray Data", "ray_data"),
                        Link("Ray Train", "ray_train"),
                    ],
                    width=THIRD,
                ),
            ],
        ),
        Row(
            "Cost and budgets",
            [
                stat(
                    "Spend rate now",
                    "What is the cluster costing per hour right now?",
                    Query("sum(raylens_cost_node_dollars_per_second) * 3600"),
                    DOLLARS_PER_HOUR,
                    decimals=2,
                    sparkline=True,
                    links=[Link("Cost drill-down", "cost", carry=("datasource",))],
                    width=SIXTH,
                ),
                stat(
                    "Spend in range",
                    "How much has the cluster cost over the selected time range?",
                    # Instant: a range query would re-read the whole range at every step. The allocation
                    # counters (idle included) sum to the same total as the node counters, from a few
                    # hundred series instead of three per node, and match the cost dashboard's figure.
                    Query("sum(increase(raylens_cost_allocation_dollars_total[$__range]))", instant=True),
                    DOLLARS,
                    decimals=2,
                    links=[Link("Cost drill-down", "cost", carry=("datasource",))],
                    width=SIXTH,
                ),
                stat(
                    "Idle share of spend",
                    "What share of the spend pays for capacity no task or actor holds?",
                    Query(
                        'sum(raylens_cost_allocation_dollars_per_second{project="__idle__"})'
                        " / sum(raylens_cost_allocation_dollars_per_second)"
                    ),
                    RATIO,
                    thresholds=WASTE_SHARE,
                    width=SIXTH,
                ),
                bargauge(
                    "Budgets: period-to-date share",
                    "How much of each budget has been spent this period?",
                    Query("raylens_budget_spend_dollars / raylens_budget_amount_dollars", "{{budget}} ({{period}})"),
                    RATIO,
                    maximum=1,
                    thresholds=BUDGET_SHARE,
                    links=[Link("Budgets & quotas", "budgets", carry=("datasource",))],
                    width=HALF,
                ),
            ],
        ),
    ],
)
