"""A small Ray workload that feeds the dashboards' Ray panels, run as a driver by the live test.

Against a running cluster (``--address``) it: deploys a Ray Serve app and sends it requests (one in
ten fails with HTTP 500) until told to stop; runs one task that raises (task failures); runs a
Ray Data pipeline for ~20 s (gauges appear only for pipelines that long) and iterates it; runs a
tiny Ray Train (v2) job on one worker that reports metrics and checkpoints. It writes a line per
phase to stdout and exits when ``--stop-file`` appears or ``--seconds`` pass.

Usage (as a driver, or as the entrypoint of a submitted Ray job with ``--address auto``):
    python tests/dashboards_workload.py --address 127.0.0.1:PORT --serve-port PORT \
        --storage DIR --stop-file PATH
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def say(message: str) -> None:
    print(f"workload: {message}", flush=True)


def start_serve(port: int) -> None:
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": port})

    @serve.deployment(name="Echo", num_replicas=1, ray_actor_options={"num_cpus": 0})
    class Echo:
        async def __call__(self, request) -> str:
            if request.query_params.get("fail"):
                raise ValueError("asked to fail")
            return "ok"

    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    say("serve app 'echo' running")


def send_requests(port: int, stop: threading.Event) -> None:
    count = 0
    while not stop.is_set():
        url = f"http://127.0.0.1:{port}/echo" + ("?fail=1" if count % 10 == 9 else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError):
            pass
        count += 1
        stop.wait(0.05)


def fail_a_task() -> None:
    import ray

    @ray.remote(num_cpus=0, max_retries=0)
    def always_fails() -> None:
        raise ValueError("raylens dashboards: an intentional task failure")

    try:
        ray.get(always_fails.remote())
    except Exception:
        say("failing task failed as intended")


def run_data_pipeline() -> None:
    import ray

    def slow_double(batch):
        time.sleep(0.25)
        return {"id": batch["id"] * 2}

    dataset = ray.data.range(6000, override_num_blocks=60).map_batches(slow_double, batch_size=100)
    rows = 0
    for batch in dataset.iter_batches(batch_size=200):
        rows += len(batch["id"])
        time.sleep(0.05)
    say(f"data pipeline done ({rows} rows)")


def run_training(storage: Path) -> None:
    import ray.train
    from ray.train import Checkpoint, RunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    def train_loop(config: dict) -> None:
        for epoch in range(config["epochs"]):
            time.sleep(1.0)
            with tempfile.TemporaryDirectory() as checkpoint_dir:
                (Path(checkpoint_dir) / "state.txt").write_text(str(epoch))
                ray.train.report({"epoch": epoch, "loss": 1.0 / (epoch + 1)}, Checkpoint.from_directory(checkpoint_dir))

    trainer = DataParallelTrainer(
        train_loop,
        train_loop_config={"epochs": 4},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name="raylens-dashboards", storage_path=str(storage)),
    )
    trainer.fit()
    say("train run done")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--serve-port", type=int, required=True)
    parser.add_argument("--storage", type=Path, required=True)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=600)
    args = parser.parse_args()

    import ray

    ray.init(address=args.address, namespace="raylens-dashboards", log_to_driver=False)
    start_serve(args.serve_port)
    stop = threading.Event()
    requester = threading.Thread(target=send_requests, args=(args.serve_port, stop), daemon=True)
    requester.start()
    fail_a_task()
    run_data_pipeline()
    run_training(args.storage)
    say("all phases done; serving until stopped")
    deadline = time.monotonic() + args.seconds
    while not args.stop_file.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    stop.set()
    requester.join(timeout=10)
    say("stopped")


if __name__ == "__main__":
    main()
