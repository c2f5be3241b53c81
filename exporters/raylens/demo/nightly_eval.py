"""Demo Ray job that fails on purpose (a task raises), so failed-job panels and alerts have a case."""

from __future__ import annotations

import time

import ray


@ray.remote(num_cpus=0.1)
def evaluate(shard: int) -> float:
    time.sleep(2)
    if shard == 3:
        raise ValueError("demo failure: evaluation shard 3 has no labels")
    return 0.9


def main() -> None:
    ray.init()
    scores = ray.get([evaluate.remote(shard) for shard in range(4)])
    print(f"scores: {scores}", flush=True)


if __name__ == "__main__":
    main()
