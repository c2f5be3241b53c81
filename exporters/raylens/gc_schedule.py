"""Full garbage collections between scrapes, not during them.

CPython's cyclic collector runs a full (generation 2) collection whenever enough new long-lived
objects have piled up; in the exporter that is every new Ray snapshot (a 10,000-row task listing is
tens of thousands of objects). Each full collection stops every thread, and a scrape caught by one
waits it out: on the busy-cluster benchmark there were 13 in 4 minutes, 37 to 81 ms each, and they
set the scrape p99 (docs/benchmarks.md).

So the exporter freezes what start-up built (modules, config, price catalog: about half the heap)
out of every later collection, keeps the automatic young collections (cheap), stops the automatic
full ones, and runs them itself: right after a scrape has been served, when none is in progress, at
most every ``interval_seconds``, and without scrapes at least every four intervals, so
cyclic garbage is still freed.
"""

from __future__ import annotations

import gc
import threading
import time

from raylens.scrape_priority import SCRAPES, ScrapePriority

DEFAULT_INTERVAL_SECONDS = 30.0
# Generation 2 is collected automatically only after this many generation-1 collections: never, in practice.
NO_AUTOMATIC_FULL_COLLECTIONS = 1_000_000_000


def defer_full_collections() -> tuple[int, int, int]:
    """Freeze what exists now out of later collections and stop automatic full ones (young ones go on);
    returns the thresholds before (``FullCollections.stop`` puts them back). Benchmarks use it too."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    young, middle, _ = thresholds
    gc.set_threshold(young, middle, NO_AUTOMATIC_FULL_COLLECTIONS)
    return thresholds


class FullCollections:
    def __init__(self, priority: ScrapePriority = SCRAPES, interval_seconds: float = DEFAULT_INTERVAL_SECONDS):
        self._priority = priority
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thresholds = gc.get_threshold()
        self.collections = 0

    def start(self) -> None:
        self._thresholds = defer_full_collections()
        self._thread = threading.Thread(target=self._run, name="gc-between-scrapes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            served = self._priority.served
            # Wake after the next scrape; without one, collect anyway after four intervals.
            scraped = self._priority.wait_for_quiet_after_scrape(served, timeout=4 * self._interval)
            if self._stop.is_set():
                return
            if scraped and time.monotonic() - last < self._interval:
                continue
            self._priority.run_between_scrapes(self._collect)
            last = time.monotonic()

    def _collect(self) -> None:
        gc.collect()
        self.collections += 1
