"""Ray's own cluster-level series for the synthetic fleet: the GCS's actor and placement-group counts
and the autoscaler's node count (on the head), and the Ray Serve, Ray Data and Ray Train series of
the workloads that run throughout: three Serve applications with replicas spread over GPU nodes,
three Ray Data pipelines of four operators, two Ray Train runs of eight workers.

Label names follow Ray 2.60 (shared/reference/ray-metrics.md and the live dashboards test); values
are shapes for ``fleet_model.values``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from fleet_model import RAY_VERSION, SESSION, Fleet, Series, labels

SERVE_APPLICATIONS = ("chat", "embed", "rerank")
LATENCY_BUCKETS = (("10", 0.2), ("50", 0.6), ("100", 0.8), ("500", 0.97), ("1000", 0.99), ("5000", 1.0), ("+Inf", 1.0))
DATASETS = ("ingest_0", "ingest_1", "featurize_2")
OPERATORS = ("ReadParquet", "MapBatches(tokenize)", "MapBatches(embed)", "Write")
TRAIN_RUNS = (("pretrain-7b", "a1b2c3"), ("finetune-1b", "d4e5f6"))


def ray_head_series(fleet: Fleet, rng: random.Random) -> Iterator[tuple[str, Series]]:
    head = fleet.nodes[0]
    whole = (fleet.start, fleet.end)
    agent = labels(instance=f"{head.ip}:8080", job="ray")
    autoscaler = labels(instance=f"{head.ip}:44217", job="ray")
    gcs = labels(Component="gcs_server", NodeAddress=head.ip, SessionName=SESSION, Version=RAY_VERSION, WorkerId="")

    def series(name: str, text: str, shape: tuple[str, float, float], where: str = agent):
        return name, Series(f"{where},{text}", shape, *whole)

    alive = sum(1 for node in fleet.nodes if node.start == fleet.start)
    yield series(
        "ray_cluster_active_nodes",
        labels(SessionName=SESSION, Version=RAY_VERSION, node_type="worker"),
        ("g", alive, 0.05),
        autoscaler,
    )
    for state, count in (("ALIVE", alive * 4), ("RESTARTING", 1), ("DEAD", 50)):
        actor = labels(JobId="01000000", Name="RayTrainWorker", Source="gcs", State=state)
        yield series("ray_actors", f"{gcs},{actor}", ("g", count, 0.2))
    for state, count in (("CREATED", 20), ("PENDING", 1), ("REMOVED", 100)):
        yield series("ray_placement_groups", f'{gcs},State="{state}"', ("g", count, 0.2))
    yield from _serve(fleet, rng)
    yield from _data(fleet, series)
    yield from _train(fleet, series)


def _serve(fleet: Fleet, rng: random.Random) -> Iterator[tuple[str, Series]]:
    """Proxies on every GPU node, two replicas per application on GPU nodes that live throughout."""
    gpu_nodes = [node for node in fleet.nodes if node.type.gpus and node.start == fleet.start] or fleet.nodes[:1]
    proxies = gpu_nodes[:20]
    whole = (fleet.start, fleet.end)
    for node in proxies:
        where = labels(instance=f"{node.ip}:8080", job="ray")
        worker = labels(SessionName=SESSION, Version=RAY_VERSION, WorkerId=f"{node.slot:040x}")
        for application in SERVE_APPLICATIONS:
            rps = rng.uniform(5, 50) / len(proxies) * 20
            route = f'application="{application}",method="POST",route="/{application}"'
            for status, share in (("200", 0.99), ("500", 0.005), ("404", 0.005)):
                yield (
                    "ray_serve_num_http_requests_total",
                    Series(f'{where},{worker},{route},status_code="{status}"', ("c", rps * share, 0), *whole),
                )
            yield (
                "ray_serve_num_http_error_requests_total",
                Series(f'{where},{worker},{route},error_code="500"', ("c", rps * 0.005, 0), *whole),
            )
            for bound, share in LATENCY_BUCKETS:
                yield (
                    "ray_serve_http_request_latency_ms_bucket",
                    Series(
                        f'{where},{worker},application="{application}",le="{bound}",route="/{application}"',
                        ("c", rps * share, 0),
                        *whole,
                    ),
                )
    for index, application in enumerate(SERVE_APPLICATIONS):
        deployment = f'application="{application}",deployment="Model"'
        head = labels(instance=f"{fleet.nodes[0].ip}:8080", job="ray")
        controller = labels(SessionName=SESSION, Version=RAY_VERSION, WorkerId="0" * 40)
        yield (
            "ray_serve_application_status",
            Series(f'{head},{controller},application="{application}"', ("k", 5, 0), *whole),
        )
        yield "ray_serve_autoscaling_target_replicas", Series(f"{head},{controller},{deployment}", ("k", 2, 0), *whole)
        yield (
            "ray_serve_deployment_replica_starts_total",
            Series(f"{head},{controller},{deployment}", ("c", 1e-5, 2), *whole),
        )
        for replica_index in range(2):
            node = gpu_nodes[(index * 2 + replica_index) % len(gpu_nodes)]
            where = labels(instance=f"{node.ip}:8080", job="ray")
            worker = labels(SessionName=SESSION, Version=RAY_VERSION, WorkerId=f"{node.slot:032x}{replica_index:08x}")
            replica = f'{deployment},replica="Model#{index}{replica_index}"'
            rate = rng.uniform(5, 50)
            yield (
                "ray_serve_deployment_request_counter_total",
                Series(f'{where},{worker},{replica},route="/{application}"', ("c", rate, 0), *whole),
            )
            yield (
                "ray_serve_deployment_error_counter_total",
                Series(
                    f'{where},{worker},{replica},exception_type="ValueError",route="/{application}"',
                    ("c", rate * 0.005, 0),
                    *whole,
                ),
            )
            for bound, share in LATENCY_BUCKETS:
                yield (
                    "ray_serve_deployment_processing_latency_ms_bucket",
                    Series(f'{where},{worker},{replica},le="{bound}"', ("c", rate * share, 0), *whole),
                )
            yield "ray_serve_deployment_replica_healthy", Series(f"{where},{worker},{replica}", ("k", 1, 0), *whole)
            yield "ray_serve_deployment_queued_queries", Series(f"{where},{worker},{deployment}", ("g", 3, 0.5), *whole)
            yield "ray_serve_replica_processing_queries", Series(f"{where},{worker},{replica}", ("g", 4, 0.5), *whole)
            yield "ray_serve_replica_utilization_percent", Series(f"{where},{worker},{replica}", ("g", 60, 0.3), *whole)


def serve_probe_series(fleet: Fleet) -> Iterator[tuple[str, Series]]:
    """The blackbox exporter probing each Serve application's route (job serve-probe, written by
    ``raylens sd``): the uptime panels and rules read these."""
    whole = (fleet.start, fleet.end)
    for application in SERVE_APPLICATIONS:
        route = f"http://{fleet.nodes[0].ip}:8000/{application}"
        probe = labels(application=application, instance=route, job="serve-probe", route_prefix=f"/{application}")
        yield "probe_success", Series(probe, ("k", 1, 0), *whole)
        yield "probe_duration_seconds", Series(probe, ("g", 0.05, 0.3), *whole)
        yield "up", Series(probe, ("k", 1, 0), *whole)


def _data(fleet: Fleet, series) -> Iterator[tuple[str, Series]]:
    for index, dataset in enumerate(DATASETS):
        job_id = f"{index + 1:08x}"
        base = labels(SessionName=SESSION, dataset=dataset)
        yield series("ray_data_dataset_state", f'{base},job_id="{job_id}"', ("k", 1, 0))
        yield series("ray_data_iter_rows_total", base, ("c", 5000, 0))
        yield series("ray_data_iter_total_seconds", base, ("c", 1, 0))
        yield series("ray_data_iter_total_blocked_seconds", base, ("c", 0.2, 0))
        for operator in OPERATORS:
            stage = f'{base},operator="{operator}"'
            yield series("ray_data_output_rows", stage, ("c", 5000, 0))
            yield series("ray_data_output_bytes", stage, ("c", 5e6, 0))
            yield series("ray_data_num_tasks_failed", stage, ("k", 0, 0))
            yield series("ray_data_num_tasks_running", stage, ("g", 8, 0.5))
            yield series("ray_data_operator_queued_blocks", stage, ("g", 20, 0.5))
            yield series("ray_data_cpu_usage_cores", stage, ("g", 16, 0.3))
            yield series("ray_data_gpu_usage_cores", stage, ("g", 2 if "embed" in operator else 0, 0.3))
            yield series("ray_data_obj_store_mem_used", stage, ("g", 2e9, 0.3))
            yield series("ray_data_spilled_bytes", stage, ("g", 1e8, 0.3))
            for bound, share in (("0.1", 0.3), ("1", 0.8), ("10", 0.99), ("+Inf", 1.0)):
                yield series("ray_data_task_completion_time_bucket", f'{stage},le="{bound}"', ("c", 4 * share, 0))


def _train(fleet: Fleet, series) -> Iterator[tuple[str, Series]]:
    for name, run_id in TRAIN_RUNS:
        run = labels(SessionName=SESSION, ray_train_run_id=run_id, ray_train_run_name=name)
        for state in ("RUNNING", "FINISHED", "ERRORED"):
            value = 1 if state == "RUNNING" else 0
            yield series("ray_train_controller_state", f'{run},ray_train_controller_state="{state}"', ("k", value, 0))
        yield series("ray_train_worker_group_start_total_time_s", run, ("k", 42.0, 0))
        yield series("ray_train_worker_group_shutdown_total_time_s", run, ("k", 3.0, 0))
        for rank in range(8):
            worker = f'{run},ray_train_worker_world_rank="{rank}"'
            yield series("ray_train_report_total_blocked_time_s", worker, ("c", 0.05, 0))
            yield series("ray_train_checkpoint_sync_total_time_s", worker, ("c", 0.01, 0))
            yield series("ray_train_checkpoint_transfer_total_time_s", worker, ("c", 0.02, 0))
