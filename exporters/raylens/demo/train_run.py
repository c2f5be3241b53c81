"""Demo Ray Train job: a tiny data-parallel loop with no framework, reporting a loss each epoch."""

from __future__ import annotations

import argparse
import tempfile
import time

import ray
import ray.train
from ray.train import RunConfig, ScalingConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer


def train_loop(config: dict) -> None:
    loss = 1.0
    for epoch in range(config["epochs"]):
        time.sleep(config["seconds_per_epoch"])
        loss *= 0.8
        ray.train.report({"epoch": epoch, "loss": loss})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seconds-per-epoch", type=float, default=2.0)
    args = parser.parse_args()
    ray.init()
    trainer = DataParallelTrainer(
        train_loop,
        train_loop_config={"epochs": args.epochs, "seconds_per_epoch": args.seconds_per_epoch},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name="raylens-demo-train", storage_path=tempfile.mkdtemp(prefix="raylens-train-")),
    )
    result = trainer.fit()
    print(f"final metrics: {result.metrics}", flush=True)


if __name__ == "__main__":
    main()
