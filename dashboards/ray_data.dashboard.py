"""Ray Data: is each pipeline moving, which operator is the bottleneck, is it spilling or failing?"""

from vocabulary import (
    ANY_IS_BAD,
    BYTES,
    BYTES_PER_SECOND,
    COUNT,
    DATASOURCE,
    NONE,
    RATIO,
    RAY_SESSION,
    ROWS_PER_SECOND,
    SECONDS,
    SESSION,
    THIRD,
    Board,
    Query,
    Row,
    Variable,
    heatmap,
    states,
    table,
    timeseries,
)

DATASET = Variable(
    "dataset",
    "Dataset",
    f"label_values(ray_data_output_rows{{{RAY_SESSION}}}, dataset)",
    description="A Ray Data execution (dataset_<id>_<n>); every run of a pipeline gets a new one.",
)
# Operator series: dataset and operator labels, plus Ray's core labels.
OPERATOR = f'{RAY_SESSION},dataset=~"$dataset"'
DATASET_STATES = states(
    {
        0: ("UNKNOWN", "text"),
        1: ("RUNNING", "blue"),
        2: ("FINISHED", "green"),
        3: ("FAILED", "red"),
        4: ("PENDING", "yellow"),
    }
)


def per_operator(metric: str) -> str:
    return f"sum by (dataset, operator) ({metric}{{{OPERATOR}}})"


dashboard = Board(
    key="ray_data",
    description="Ray Data pipelines from Ray's own ray_data_* metrics: throughput and resources per "
    "operator, object store use and spilling, task failures, and how long consumers wait. Series exist "
    "only while a dataset runs (and a few seconds after).",
    variables=[DATASOURCE, SESSION, DATASET],
    rows=[
        Row(
            "Datasets",
            [
                table(
                    "Datasets in range",
                    "Which datasets ran in this time range, for which job, and how did they end?",
                    Query(f"max by (dataset, job_id) (last_over_time(ray_data_dataset_state{{{OPERATOR}}}[$__range]))"),
                    NONE,
                    columns={"dataset": "Dataset", "job_id": "Ray job", "Value": "State"},
                    mappings=DATASET_STATES,
                    width=THIRD * 2,
                ),
                timeseries(
                    "Failed tasks",
                    "Are any of the pipeline's tasks failing?",
                    Query(per_operator("ray_data_num_tasks_failed"), "{{operator}}"),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    width=THIRD,
                ),
            ],
        ),
        Row(
            "Throughput per operator",
            [
                timeseries(
                    "Rows out per second",
                    "How fast does each operator produce rows (the slowest one sets the pace)?",
                    Query(
                        f"sum by (dataset, operator) (rate(ray_data_output_rows{{{OPERATOR}}}[$__rate_interval]))",
                        "{{operator}}",
                    ),
                    ROWS_PER_SECOND,
                ),
                timeseries(
                    "Bytes out per second",
                    "How much data does each operator produce per second?",
                    Query(
                        f"sum by (dataset, operator) (rate(ray_data_output_bytes{{{OPERATOR}}}[$__rate_interval]))",
                        "{{operator}}",
                    ),
                    BYTES_PER_SECOND,
                ),
                timeseries(
                    "Tasks running per operator",
                    "How many tasks does each operator have in flight?",
                    Query(per_operator("ray_data_num_tasks_running"), "{{operator}}"),
                    COUNT,
                    width=THIRD,
                ),
                timeseries(
                    "Blocks queued per operator",
                    "Where are blocks piling up waiting for the next operator (the bottleneck is after it)?",
                    Query(per_operator("ray_data_operator_queued_blocks"), "{{operator}}"),
                    COUNT,
                    width=THIRD,
                ),
                heatmap(
                    "Task completion time",
                    "How long do the pipeline's tasks take, and is the spread widening?",
                    Query(f"sum by (le) (rate(ray_data_task_completion_time_bucket{{{OPERATOR}}}[$__rate_interval]))"),
                    SECONDS,
                    width=THIRD,
                ),
            ],
        ),
        Row(
            "Resources",
            [
                timeseries(
                    "CPU cores used per operator",
                    "How many CPU cores is each operator using?",
                    Query(per_operator("ray_data_cpu_usage_cores"), "{{operator}}"),
                    COUNT,
                    stack=True,
                    width=THIRD,
                ),
                timeseries(
                    "GPUs used per operator",
                    "How many GPUs is each operator using (zero for CPU-only pipelines)?",
                    Query(per_operator("ray_data_gpu_usage_cores"), "{{operator}}"),
                    COUNT,
                    stack=True,
                    width=THIRD,
                ),
                timeseries(
                    "Object store memory per operator",
                    "How much object store memory does each operator's output hold?",
                    Query(per_operator("ray_data_obj_store_mem_used"), "{{operator}}"),
                    BYTES,
                    stack=True,
                    width=THIRD,
                ),
                timeseries(
                    "Spilled bytes per operator",
                    "Is the pipeline spilling to disk because the object store is full?",
                    Query(per_operator("ray_data_spilled_bytes"), "{{operator}}"),
                    BYTES,
                ),
                timeseries(
                    "Consumer time blocked waiting for data",
                    "What share of the consumer's time (training loop, iter_batches) is spent waiting for data?",
                    Query(
                        f"sum by (dataset) (rate(ray_data_iter_total_blocked_seconds{{{OPERATOR}}}[$__rate_interval]))",
                        "{{dataset}}",
                    ),
                    RATIO,
                    minimum=0,
                ),
            ],
        ),
    ],
)
