"""Demo Ray job: fills the object store past its size so Ray spills to disk, holds, then frees.

Each object is 10 MB; ``--objects`` of them are held at once (ray.put keeps primary copies pinned),
so on the demo head's 100 MB store Ray must spill some, and restores them when they are read back.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ray


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=14, help="10 MB objects held at once")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds to hold them")
    args = parser.parse_args()
    ray.init()
    refs = [ray.put(np.full(10_000_000, index % 256, dtype=np.uint8)) for index in range(args.objects)]
    time.sleep(args.hold)
    restored = sum(int(ray.get(ref)[0]) for ref in refs)  # reading spilled objects restores them
    print(f"held {len(refs)} x 10 MB, read back (checksum {restored})", flush=True)


if __name__ == "__main__":
    main()
