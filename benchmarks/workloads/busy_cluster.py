"""A busy Ray cluster for the scrape-path benchmark: 10,000 short tasks, 200 actors, then idle.

Run as a Ray job (``ray job submit -- python busy_cluster.py``). Actors are created in waves and
most are killed again, so the actor table holds 200 entries (``ACTORS_ALIVE`` of them alive, each a
worker process) without 200 Python processes on a 2-core machine; what the exporter lists is the
same size either way. Tasks run in batches so the task-event store fills with FINISHED attempts
while some are RUNNING, as on a real cluster.
"""

from __future__ import annotations

import os
import time

import ray

TASKS = int(os.environ.get("BUSY_TASKS", "10000"))
ACTORS = int(os.environ.get("BUSY_ACTORS", "200"))
ACTORS_ALIVE = int(os.environ.get("BUSY_ACTORS_ALIVE", "20"))
HOLD_SECONDS = float(os.environ.get("BUSY_HOLD_SECONDS", "0"))


@ray.remote(num_cpus=0.01)
def short_task(index: int) -> int:
    return index * 2


@ray.remote(num_cpus=0)
class Worker:
    def ping(self) -> str:
        return "pong"


def main() -> None:
    ray.init()
    alive = []
    wave = 20
    for start in range(0, ACTORS, wave):
        actors = [Worker.remote() for _ in range(min(wave, ACTORS - start))]
        ray.get([actor.ping.remote() for actor in actors])
        if len(alive) < ACTORS_ALIVE:
            keep = ACTORS_ALIVE - len(alive)
            alive += actors[:keep]
            actors = actors[keep:]
        for actor in actors:
            ray.kill(actor)
    done = 0
    batch = 500
    while done < TASKS:
        count = min(batch, TASKS - done)
        ray.get([short_task.remote(done + i) for i in range(count)])
        done += count
    print(f"busy: {TASKS} tasks, {ACTORS} actors ({len(alive)} alive)", flush=True)
    if HOLD_SECONDS:
        time.sleep(HOLD_SECONDS)


if __name__ == "__main__":
    main()
