"""Ray core: are tasks and actors healthy, is the object store under pressure, can work be scheduled?"""

from vocabulary import (
    ANY_IS_BAD,
    BYTES,
    BYTES_PER_SECOND,
    COUNT,
    DATASOURCE,
    MILLISECONDS,
    NODE,
    QUARTER,
    RATIO,
    RAY_CORE,
    RAY_NODE,
    RAY_SESSION,
    RAYLENS_NODE,
    SATURATION,
    SESSION,
    THIRD,
    Board,
    Query,
    Row,
    stat,
    timeseries,
)

# ray_tasks and ray_actors are gauges built from +1/-1 deltas sent by several processes: only their
# sum means anything (ray-metrics.md section 5), so every query below sums them.
dashboard = Board(
    key="ray_core",
    description="Ray's own core metrics: tasks and actors by state, object store memory and spilling "
    "per node, logical resources and the scheduler.",
    variables=[DATASOURCE, SESSION, NODE],
    rows=[
        Row(
            "Tasks and actors",
            [
                stat(
                    "Running tasks",
                    "How many tasks are executing right now?",
                    Query(f'sum(ray_tasks{{{RAY_SESSION},State=~"RUNNING.*"}})'),
                    COUNT,
                    width=QUARTER,
                ),
                stat(
                    "Failed tasks",
                    "How many task attempts have failed in this session?",
                    Query(f'sum(ray_tasks{{{RAY_SESSION},State="FAILED"}})'),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    width=QUARTER,
                ),
                stat(
                    "Alive actors",
                    "How many actors are alive (idle or running tasks)?",
                    Query(f'sum(ray_actors{{{RAY_SESSION},Source="gcs",State=~"ALIVE.*"}})'),
                    COUNT,
                    width=QUARTER,
                ),
                stat(
                    "Restarting actors",
                    "Are actors crash-looping right now?",
                    Query(f'sum(ray_actors{{{RAY_SESSION},Source="gcs",State="RESTARTING"}}) or vector(0)'),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    width=QUARTER,
                ),
                timeseries(
                    "Tasks by state",
                    "Where are unfinished tasks stuck: waiting for arguments, for a node, or running?",
                    Query(f'sum by (State) (ray_tasks{{{RAY_SESSION},State!~"FINISHED|FAILED"}})', "{{State}}"),
                    COUNT,
                    stack=True,
                ),
                timeseries(
                    "Finished and failed tasks",
                    "How many tasks have finished and failed so far in this session?",
                    Query(f'sum by (State) (ray_tasks{{{RAY_SESSION},State=~"FINISHED|FAILED"}})', "{{State}}"),
                    COUNT,
                ),
                timeseries(
                    "Running tasks by job",
                    "Which Ray job is using the cluster's task slots?",
                    Query(
                        f'sum by (JobId) (ray_tasks{{{RAY_SESSION},Source="executor",State=~"RUNNING.*"}})',
                        "job {{JobId}}",
                    ),
                    COUNT,
                    stack=True,
                ),
                timeseries(
                    "Task failures by error type",
                    "Why do tasks fail: exceptions in user code, dead workers, out of memory?",
                    Query(
                        "sum by (error_type) (increase(raylens_ray_task_failures_total"
                        f"{{{RAY_SESSION}}}[$__rate_interval]))",
                        "{{error_type}}",
                    ),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    bars=True,
                ),
                timeseries(
                    "Logical resources held by job",
                    "Which Ray job holds the cluster's CPUs and GPUs (running tasks and alive actors)?",
                    Query(
                        "sum by (job_id, resource) "
                        f'(raylens_ray_job_resources_held{{{RAY_SESSION},resource=~"CPU|GPU"}})',
                        "job {{job_id}} {{resource}}",
                    ),
                    COUNT,
                    stack=True,
                ),
                timeseries(
                    "Actors by state",
                    "Are actors stuck pending creation, restarting or dying?",
                    Query(f'sum by (State) (ray_actors{{{RAY_SESSION},Source="gcs"}})', "{{State}}"),
                    COUNT,
                    stack=True,
                ),
            ],
        ),
        Row(
            "Object store",
            [
                timeseries(
                    "Object store memory by location",
                    "How much object store memory is in shared memory, on disk as fallback, or spilled?",
                    Query(f"sum by (Location) (ray_object_store_memory{{{RAY_CORE}}})", "{{Location}}"),
                    BYTES,
                    stack=True,
                ),
                timeseries(
                    "Object store pressure per node",
                    "Which node's object store is close to full (Ray starts spilling at 80%)?",
                    Query(
                        f"max by (NodeAddress) (raylens_ray_object_store_pressure_ratio{{{RAYLENS_NODE}}})",
                        "{{NodeAddress}}",
                    ),
                    RATIO,
                    minimum=0,
                    maximum=1,
                    thresholds=SATURATION,
                    show_thresholds=True,
                ),
                timeseries(
                    "Spilled and restored per second",
                    "How fast is Ray moving objects to disk and back (spilling slows everything down)?",
                    [
                        Query(
                            "sum by (NodeAddress) (rate(raylens_ray_object_store_spilled_bytes_total"
                            f"{{{RAYLENS_NODE}}}[$__rate_interval]))",
                            "spilled {{NodeAddress}}",
                        ),
                        Query(
                            "sum by (NodeAddress) (rate(raylens_ray_object_store_restored_bytes_total"
                            f"{{{RAYLENS_NODE}}}[$__rate_interval]))",
                            "restored {{NodeAddress}}",
                        ),
                    ],
                    BYTES_PER_SECOND,
                ),
                timeseries(
                    "Spilled object bytes per node",
                    "How much spilled data does each node hold on disk now?",
                    Query(
                        f'sum by (NodeAddress) (ray_object_store_memory{{{RAY_CORE},Location="SPILLED"}})',
                        "{{NodeAddress}}",
                    ),
                    BYTES,
                ),
                timeseries(
                    "Objects in the store per node",
                    "How many objects does each node hold (a leak shows as steady growth)?",
                    Query(
                        f"sum by (NodeAddress) (ray_object_store_num_local_objects{{{RAY_CORE}}})",
                        "{{NodeAddress}}",
                    ),
                    COUNT,
                ),
            ],
        ),
        Row(
            "Resources and scheduling",
            [
                timeseries(
                    "Logical resources in use",
                    "What share of the cluster's CPUs, GPUs and memory have tasks and actors reserved?",
                    Query(
                        f'sum by (Name) (ray_resources{{{RAY_CORE},State="USED",Name=~"CPU|GPU|memory"}})'
                        f' / sum by (Name) (ray_resources{{{RAY_CORE},Name=~"CPU|GPU|memory"}})',
                        "{{Name}}",
                    ),
                    RATIO,
                    minimum=0,
                    maximum=1,
                    thresholds=SATURATION,
                    width=THIRD,
                ),
                timeseries(
                    "Scheduler queue by state",
                    "Are tasks waiting for resources, for workers, or unschedulable?",
                    Query(f"sum by (State) (ray_scheduler_tasks{{{RAY_CORE}}})", "{{State}}"),
                    COUNT,
                    width=THIRD,
                ),
                timeseries(
                    "Task placement time (p95)",
                    "How long does the scheduler take to place a task or actor?",
                    Query(
                        "histogram_quantile(0.95, sum by (le, WorkloadType) "
                        f"(rate(ray_scheduler_placement_time_ms_bucket{{{RAY_CORE}}}[$__rate_interval])))",
                        "{{WorkloadType}}",
                    ),
                    MILLISECONDS,
                    width=THIRD,
                ),
                timeseries(
                    "Unschedulable tasks by reason",
                    "Why can't some tasks be scheduled (infeasible resources, placement groups)?",
                    Query(f"sum by (Reason) (ray_scheduler_unscheduleable_tasks{{{RAY_CORE}}})", "{{Reason}}"),
                    COUNT,
                    width=THIRD,
                ),
                timeseries(
                    "Placement groups by state",
                    "Are placement groups (gangs for Train and Serve) created, or pending?",
                    Query(f"sum by (State) (ray_placement_groups{{{RAY_SESSION}}})", "{{State}}"),
                    COUNT,
                    width=THIRD,
                ),
                timeseries(
                    "Workers killed for memory (OOM)",
                    "Is Ray's memory monitor killing workers because a node ran out of memory?",
                    Query(
                        "sum by (NodeAddress) (increase("
                        f"ray_memory_manager_worker_eviction_total{{{RAY_CORE}}}[$__rate_interval]))",
                        "{{NodeAddress}}",
                    ),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    bars=True,
                    width=THIRD,
                ),
                timeseries(
                    "Memory of Ray processes (top 10)",
                    "Which Ray processes (raylet, GCS, workers, actors) hold the most memory?",
                    Query(
                        f"topk(10, sum by (Component) (ray_component_rss_bytes{{{RAY_NODE}}}))",
                        "{{Component}}",
                    ),
                    BYTES,
                    width=24,
                ),
            ],
        ),
    ],
)
