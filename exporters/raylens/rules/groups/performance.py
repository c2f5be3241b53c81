"""Alerts on workloads: jobs running too long, stalled Data pipelines, failed Train runs, Serve SLO burn.

Serve SLOs use multi-window, multi-burn-rate alerts (Google SRE workbook, ch. 5) over a 30-day
budget: a page when the last hour and the last 5 minutes both burn the budget 14.4 times too fast
(2 % of it gone in an hour), a ticket when the last 6 hours and the last 30 minutes burn it 6 times too
fast (5 % in 6 hours). The short window makes the alert stop soon after the burn stops.

Latency burn needs the share of requests slower than the threshold. Reading it from the bucket
whose `le` is the threshold breaks on Prometheus 3 (`le="1000"` became `le="1000.0"`), so it is read
through the equivalent quantile: more than a share f of requests are slower than T exactly when the
(1 - f) quantile is above T.
"""

from __future__ import annotations

from raylens.rules.model import Alert, AlertGroup

_JOB_KEY = "SessionName, job_id, submission_id"
# Job metadata copied onto job alerts so Alertmanager can route them to the owner. The info side is
# reduced with max by () so that two exporters running the ray collector cannot make the join fail.
_OWNER = "user, project, team"


def _error_burn(long: str, short: str, factor: str) -> str:
    budget = f"{factor} * (1 - %(serve_availability_slo_percent)s / 100)"
    return (
        f"application:ray_serve_http_errors_per_requests:ratio_rate{long}{{%(serve_slo_selector)s}} > {budget}\n"
        "and\n"
        f"application:ray_serve_http_errors_per_requests:ratio_rate{short}{{%(serve_slo_selector)s}} > {budget}"
    )


def _latency_burn(long: str, short: str, factor: str) -> str:
    quantile = f"1 - {factor} * (1 - %(serve_latency_slo_percent)s / 100)"
    buckets = "application_le:ray_serve_http_request_latency_ms_bucket:rate{window}{{%(serve_slo_selector)s}}"
    return (
        f"histogram_quantile({quantile}, {buckets.format(window=long)}) > %(serve_latency_threshold_ms)s\n"
        "and\n"
        f"histogram_quantile({quantile}, {buckets.format(window=short)}) > %(serve_latency_threshold_ms)s"
    )


def _error_description(long: str, short: str, factor: str, lasts: str) -> str:
    return (
        "{{ $labels.application }} ({{ $labels.SessionName }}) answered {{ $value | humanizePercentage }} of "
        f"its HTTP requests with 5xx over the last {long} and still over the last {short}: {factor} times the "
        "error budget of its %(serve_availability_slo_percent)s%% availability SLO. At this rate the 30-day "
        f"budget lasts {lasts}."
    )


def _latency_description(long: str, short: str, factor: str, lasts: str) -> str:
    return (
        f"{{{{ $labels.application }}}} ({{{{ $labels.SessionName }}}}) spent {factor} times its latency budget "
        f"over the last {long} and still over the last {short}: the SLO wants %(serve_latency_slo_percent)s%% of "
        'requests within %(serve_latency_threshold_ms)s ms, and {{ printf "%%.0f" $value }} ms is the latency at the '
        f"quantile that marks this burn rate. At this rate the 30-day budget lasts {lasts}."
    )


PERFORMANCE = AlertGroup(
    "raylens-performance",
    (
        Alert(
            name="RaylensJobRunningTooLong",
            expr="(\n"
            "  raylens_ray_job_duration_seconds{%(exporter_selector)s} > %(job_running_warning_hours)s * 3600\n"
            f"  and on ({_JOB_KEY})\n"
            '  (raylens_ray_job_status{%(exporter_selector)s, status="RUNNING"} == 1)\n'
            f"  unless on ({_JOB_KEY})\n"
            "  raylens_ray_job_info{%(exporter_selector)s, %(long_running_job_exclude_selector)s}\n"
            ")\n"
            f"* on ({_JOB_KEY}) group_left ({_OWNER})\n"
            f"max by ({_JOB_KEY}, {_OWNER}) (raylens_ray_job_info{{%(exporter_selector)s}})",
            for_="0m",
            severity="warning",
            summary="A Ray job has been running for longer than expected.",
            description="Ray job {{ $labels.submission_id }} ({{ $labels.job_id }}{{ with $labels.user }}, user "
            "{{ . }}{{ end }}{{ with $labels.team }}, team {{ . }}{{ end }}) has been running for "
            "{{ $value | humanizeDuration }}, over the %(job_running_warning_hours)sh limit; it may be stuck "
            "waiting for resources or for a hung task.",
        ),
        Alert(
            name="RaylensDataPipelineStalled",
            expr="(\n"
            "  max by (SessionName, job_id, dataset) (ray_data_dataset_state == 1)\n"
            "  and on (SessionName, job_id)\n"
            '  (raylens_ray_job_status{%(exporter_selector)s, status="RUNNING"} == 1)\n'
            "  unless on (SessionName, dataset)\n"
            "  (dataset:ray_data_output_rows:rate5m > 0)\n"
            ")\n"
            f"* on (SessionName, job_id) group_left ({_OWNER})\n"
            f'max by (SessionName, job_id, {_OWNER}) (raylens_ray_job_info{{%(exporter_selector)s, job_id!=""}})',
            for_="%(data_pipeline_stalled_for)s",
            severity="warning",
            summary="A Ray Data pipeline has stopped making progress.",
            description="Dataset {{ $labels.dataset }} of Ray job {{ $labels.job_id }}{{ with $labels.team }} "
            "(team {{ . }}){{ end }} is running but none of its operators has output a row for "
            "%(data_pipeline_stalled_for)s; it is waiting on resources, a hung task or backpressure from a stuck "
            "consumer.",
        ),
        Alert(
            name="RaylensTrainRunErrored",
            expr="max by (SessionName, ray_train_run_name, ray_train_run_id) (\n"
            "  max_over_time(\n"
            '    ray_train_controller_state{ray_train_controller_state="ERRORED"}[%(event_alert_window)s]\n'
            "  )\n"
            ") == 1",
            for_="0m",
            severity="warning",
            summary="A Ray Train run failed.",
            description="Train run {{ $labels.ray_train_run_name }} ({{ $labels.ray_train_run_id }}) of "
            "{{ $labels.SessionName }} reached ERRORED within %(event_alert_window)s: its workers failed more "
            "often than its FailureConfig allows, or the controller hit an error.",
        ),
        Alert(
            name="RaylensServeErrorBudgetBurn",
            expr=_error_burn("1h", "5m", "14.4"),
            for_="2m",
            severity="critical",
            summary="A Ray Serve application is burning its error budget fast.",
            description=_error_description("hour", "5 minutes", "14.4", "about 2 days"),
        ),
        Alert(
            name="RaylensServeErrorBudgetBurn",
            expr=_error_burn("6h", "30m", "6"),
            for_="15m",
            severity="warning",
            summary="A Ray Serve application is burning its error budget.",
            description=_error_description("6 hours", "30 minutes", "6", "5 days"),
        ),
        Alert(
            name="RaylensServeLatencyBudgetBurn",
            expr=_latency_burn("1h", "5m", "14.4"),
            for_="2m",
            severity="critical",
            summary="A Ray Serve application is burning its latency budget fast.",
            description=_latency_description("hour", "5 minutes", "14.4", "about 2 days"),
        ),
        Alert(
            name="RaylensServeLatencyBudgetBurn",
            expr=_latency_burn("6h", "30m", "6"),
            for_="15m",
            severity="warning",
            summary="A Ray Serve application is burning its latency budget.",
            description=_latency_description("6 hours", "30 minutes", "6", "5 days"),
        ),
    ),
)
