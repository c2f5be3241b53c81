"""Demo Ray Data job: a small batch pipeline repeated for a while, so Ray Data metrics have a life."""

from __future__ import annotations

import argparse
import time

import ray


def square(batch: dict) -> dict:
    batch["id"] = batch["id"] * batch["id"]
    return batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=120.0, help="seconds to keep running pipelines")
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    ray.init()
    deadline = time.monotonic() + args.duration
    rounds = 0
    while True:
        dataset = ray.data.range(args.rows, override_num_blocks=8).map_batches(square, batch_size=1_000)
        total = dataset.sum("id")
        rounds += 1
        print(f"round {rounds}: sum of squares = {total}", flush=True)
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)


if __name__ == "__main__":
    main()
