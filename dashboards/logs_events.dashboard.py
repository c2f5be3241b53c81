"""Logs & events: what happened to the cluster (nodes, jobs, Serve) and what Ray wrote about it.

Events come from raylens_ray_events_total (the `ray` collector's workspace events) and show as
annotations on every time axis; log lines come from Loki, fed by Grafana Alloy
(provisioning/alloy/config.alloy) with the labels `raylens logs` uses: session, component, job_id."""

from vocabulary import (
    ANY_IS_BAD,
    COUNT,
    DATASOURCE,
    FULL,
    HALF,
    LOKI,
    LOKI_REF,
    NEUTRAL,
    SESSION,
    SIXTH,
    Annotation,
    Board,
    Query,
    Row,
    Variable,
    logs,
    stat,
    table,
    timeseries,
)

COMPONENTS = (
    "worker,driver,job_driver,runtime_env,raylet,gcs,autoscaler,dashboard,agent,"
    "serve_controller,serve_proxy,serve_replica,internal"
)
COMPONENT = Variable(
    "component",
    "Component",
    COMPONENTS,
    kind="custom",
    description="Which Ray process wrote the line (the names of `raylens logs --component`).",
)
JOB = Variable(
    "job_id",
    "Job id",
    ".*",
    kind="textbox",
    description="A Ray job id (02000000) or a regex; .* for every job and for lines of no job.",
)
SEARCH = Variable("search", "Search", "", kind="textbox", description="Regex the log line must match.")

EVENTS = 'raylens_ray_events_total{SessionName=~"$SessionName"}'
RAY_LOGS = '{service_name="ray", session=~"$SessionName", component=~"$component", job_id=~"$job_id"} |~ "$search"'


def events_in_range(kinds: str) -> Query:
    return Query(f'sum(increase({EVENTS[:-1]},kind=~"{kinds}"}}[$__range])) or vector(0)')


dashboard = Board(
    key="logs_events",
    description="Workspace events (nodes joining, dying, preempted; jobs starting and finishing; Serve "
    "status changes) as counts and annotations, and Ray's own log lines from Loki, filtered by session, "
    "component, job and text.",
    variables=[DATASOURCE, LOKI, SESSION, COMPONENT, JOB, SEARCH],
    annotations=[
        Annotation(
            "Node events",
            f'sum by (kind, cause) (changes({EVENTS[:-1]},kind=~"node_.*|cluster_session_started"}}[1m])) > 0',
            "{{kind}}",
            "{{cause}}",
            colour="red",
            tags=("kind", "cause"),
        ),
        Annotation(
            "Job failures",
            f'sum by (kind, cause) (changes({EVENTS[:-1]},kind="job_failed"}}[1m])) > 0',
            "{{kind}}",
            "{{cause}}",
            colour="orange",
            tags=("kind", "cause"),
        ),
        Annotation(
            "Events log (Loki)",
            '{service_name="raylens-events", session=~"$SessionName"} | json',
            "{{kind}}",
            "{{message}}",
            colour="blue",
            datasource=LOKI_REF,
            tags=("kind", "severity"),
        ),
    ],
    rows=[
        Row(
            "Workspace events",
            [
                stat(
                    "Nodes died or preempted",
                    "Did any Ray node die unexpectedly or get preempted in the selected range?",
                    events_in_range("node_died|node_preempted"),
                    COUNT,
                    decimals=0,
                    thresholds=ANY_IS_BAD,
                    color_background=True,
                    width=SIXTH,
                ),
                stat(
                    "Nodes joined",
                    "How many Ray nodes joined the cluster in the selected range?",
                    events_in_range("node_joined"),
                    COUNT,
                    decimals=0,
                    width=SIXTH,
                ),
                stat(
                    "Jobs started",
                    "How many Ray jobs started in the selected range?",
                    events_in_range("job_started"),
                    COUNT,
                    decimals=0,
                    width=SIXTH,
                ),
                stat(
                    "Jobs failed",
                    "How many Ray jobs failed in the selected range?",
                    events_in_range("job_failed"),
                    COUNT,
                    decimals=0,
                    thresholds=ANY_IS_BAD,
                    color_background=True,
                    width=SIXTH,
                ),
                stat(
                    "Jobs succeeded",
                    "How many Ray jobs succeeded in the selected range?",
                    events_in_range("job_succeeded"),
                    COUNT,
                    decimals=0,
                    width=SIXTH,
                ),
                stat(
                    "Serve status changes",
                    "How often did Serve applications or deployments change status in the selected range?",
                    events_in_range("serve_.*"),
                    COUNT,
                    decimals=0,
                    width=SIXTH,
                ),
                timeseries(
                    "Events by kind",
                    "What kind of events happened, and when?",
                    Query(f"sum by (kind) (increase({EVENTS}[$__rate_interval])) > 0", "{{kind}}"),
                    COUNT,
                    bars=True,
                    stack=True,
                    legend_calcs=("sum",),
                    width=HALF,
                ),
                table(
                    "Events in range by kind and cause",
                    "Which events happened in the selected range, and why?",
                    Query(f"sum by (SessionName, kind, cause) (increase({EVENTS}[$__range])) > 0"),
                    COUNT,
                    columns={"SessionName": "Session", "kind": "Kind", "cause": "Cause", "Value": "Events"},
                    decimals=0,
                    sort_by="Events",
                    width=HALF,
                ),
            ],
        ),
        Row(
            "Ray logs (Loki)",
            [
                timeseries(
                    "Log lines by component",
                    "Which Ray processes are writing, and is anything suddenly noisy?",
                    Query(
                        f"sum by (component) (count_over_time({RAY_LOGS} [$__interval]))",
                        "{{component}}",
                        datasource=LOKI_REF,
                    ),
                    COUNT,
                    stack=True,
                    bars=True,
                    legend_calcs=("sum",),
                    width=HALF,
                ),
                timeseries(
                    "Error lines by component",
                    "Where do errors and tracebacks come from?",
                    Query(
                        f'sum by (component) (count_over_time({RAY_LOGS} |~ "(?i)(error|traceback|exception)" '
                        "[$__interval]))",
                        "{{component}}",
                        datasource=LOKI_REF,
                    ),
                    COUNT,
                    thresholds=NEUTRAL,
                    legend_calcs=("sum",),
                    width=HALF,
                ),
                logs(
                    "Ray log lines",
                    "What did the selected Ray processes write (newest first)?",
                    Query(RAY_LOGS, datasource=LOKI_REF),
                    width=FULL,
                    height=12,
                ),
                logs(
                    "Errors and tracebacks",
                    "Which lines mention an error, exception or traceback?",
                    Query(f'{RAY_LOGS} |~ "(?i)(error|traceback|exception)"', datasource=LOKI_REF),
                    width=HALF,
                ),
                logs(
                    "Workspace events log",
                    "What does raylens's events log say, line by line?",
                    Query('{service_name="raylens-events", session=~"$SessionName"}', datasource=LOKI_REF),
                    width=HALF,
                ),
            ],
        ),
    ],
)
