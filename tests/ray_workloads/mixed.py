"""An actor pool, tasks that fail, an actor that crashes, and objects put until the store spills.

Usage: python mixed.py RELEASE_FILE [FAILING_TASKS]. Prints ``READY`` once every object is in place,
then holds them until RELEASE_FILE exists, so a test can measure the object store meanwhile.
"""

import contextlib
import os
import sys
import time

import ray
from ray.util import ActorPool

OBJECT_BYTES = 10_000_000
OBJECTS = 12  # 120 MB into a 100 MB store: the oldest primary copies spill to disk


@ray.remote(num_cpus=0.25)
class Squarer:
    def square(self, value: int) -> int:
        return value * value


@ray.remote(num_cpus=0.25, max_restarts=0)
class Crasher:
    def crash(self) -> None:
        os._exit(1)


@ray.remote(num_cpus=0.25, max_retries=0)
def fail_on_purpose(index: int) -> None:
    raise ValueError(f"task {index} fails on purpose")


@ray.remote(num_cpus=0.25)
def add_one(value: int) -> int:
    return value + 1


def main() -> None:
    release = sys.argv[1]
    failing = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ray.init()

    pool = ActorPool([Squarer.remote() for _ in range(2)])
    assert list(pool.map(lambda actor, value: actor.square.remote(value), range(20))) == [
        value * value for value in range(20)
    ]
    assert ray.get([add_one.remote(value) for value in range(10)]) == list(range(1, 11))

    failed = 0
    for ref in [fail_on_purpose.remote(index) for index in range(failing)]:
        try:
            ray.get(ref)
        except ray.exceptions.RayTaskError:
            failed += 1
    assert failed == failing, failed

    crasher = Crasher.remote()
    with contextlib.suppress(ray.exceptions.RayActorError):
        ray.get(crasher.crash.remote())

    held = [ray.put(bytes([index]) * OBJECT_BYTES) for index in range(OBJECTS)]
    # Reading every object back, one at a time, restores those that were spilled to make room.
    for index, ref in enumerate(held):
        assert ray.get(ref)[:1] == bytes([index])
    print("READY", flush=True)
    while not os.path.exists(release):
        time.sleep(0.2)
    print("released", len(held), flush=True)


if __name__ == "__main__":
    main()
