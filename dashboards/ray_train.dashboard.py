"""Ray Train: what state is each run in, and where does its wall time go?"""

from vocabulary import (
    COUNT,
    DATASOURCE,
    NONE,
    RATIO,
    RAY_SESSION,
    SECONDS,
    SESSION,
    THIRD,
    Board,
    Query,
    Row,
    Variable,
    table,
    timeseries,
)

RUN = Variable(
    "run",
    "Train run",
    f"label_values(ray_train_controller_state{{{RAY_SESSION}}}, ray_train_run_name)",
    description="RunConfig(name=...) of a Ray Train run; names are reused across attempts, ids are not.",
)
RUN_SELECTOR = f'{RAY_SESSION},ray_train_run_name=~"$run"'

dashboard = Board(
    key="ray_train",
    description="Ray Train (v2) runs from Ray's ray_train_* metrics: controller state, worker group "
    "start-up, time workers spend blocked in report() and on checkpoints. Ray exports no step, loss or "
    "throughput metric; report them from the training loop with ray.util.metrics if you need them.",
    variables=[DATASOURCE, SESSION, RUN],
    rows=[
        Row(
            "Runs",
            [
                table(
                    "Runs in range",
                    "Which runs happened in this time range and what state did each end in?",
                    Query(
                        "max by (ray_train_run_name, ray_train_run_id, ray_train_controller_state) "
                        f"(last_over_time(ray_train_controller_state{{{RUN_SELECTOR}}}[$__range])) == 1"
                    ),
                    NONE,
                    columns={
                        "ray_train_run_name": "Run",
                        "ray_train_run_id": "Run id",
                        "ray_train_controller_state": "Last state",
                    },
                    hide=("Value",),
                    width=THIRD * 2,
                ),
                timeseries(
                    "Runs by controller state",
                    "Are runs scheduling, running, restarting after failures, or erroring?",
                    Query(
                        f"count by (ray_train_controller_state) (ray_train_controller_state{{{RUN_SELECTOR}}} == 1)",
                        "{{ray_train_controller_state}}",
                    ),
                    COUNT,
                    stack=True,
                    width=THIRD,
                ),
            ],
        ),
        Row(
            "Where the time goes",
            [
                timeseries(
                    "Worker group start-up time",
                    "How long did starting the worker group take (scheduling, placement, setup)?",
                    Query(
                        f"max by (ray_train_run_name) (ray_train_worker_group_start_total_time_s{{{RUN_SELECTOR}}})",
                        "{{ray_train_run_name}}",
                    ),
                    SECONDS,
                    width=THIRD,
                ),
                timeseries(
                    "Share of time blocked in report()",
                    "What share of each worker's time is spent blocked in ray.train.report()?",
                    Query(
                        "sum by (ray_train_run_name, ray_train_worker_world_rank) (rate("
                        f"ray_train_report_total_blocked_time_s{{{RUN_SELECTOR}}}[$__rate_interval]))",
                        "{{ray_train_run_name}} rank {{ray_train_worker_world_rank}}",
                    ),
                    RATIO,
                    minimum=0,
                    width=THIRD,
                ),
                timeseries(
                    "Checkpoint time per worker",
                    "How long have workers spent syncing and uploading checkpoints so far?",
                    [
                        Query(
                            "sum by (ray_train_run_name, ray_train_worker_world_rank) "
                            f"(ray_train_checkpoint_sync_total_time_s{{{RUN_SELECTOR}}})",
                            "sync rank {{ray_train_worker_world_rank}}",
                        ),
                        Query(
                            "sum by (ray_train_run_name, ray_train_worker_world_rank) "
                            f"(ray_train_checkpoint_transfer_total_time_s{{{RUN_SELECTOR}}})",
                            "transfer rank {{ray_train_worker_world_rank}}",
                        ),
                    ],
                    SECONDS,
                    width=THIRD,
                ),
                timeseries(
                    "Worker group shutdown time",
                    "How long did tearing the worker group down take?",
                    Query(
                        f"max by (ray_train_run_name) (ray_train_worker_group_shutdown_total_time_s{{{RUN_SELECTOR}}})",
                        "{{ray_train_run_name}}",
                    ),
                    SECONDS,
                    width=THIRD,
                ),
            ],
        ),
    ],
)
