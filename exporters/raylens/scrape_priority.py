"""Scrapes first: the exporter's background work steps aside while a scrape is being served.

CPython runs one thread at a time and switches every 5 ms, so a scrape that lands while the
refresher parses a 10,000-row task listing, or the cost engine accounts the new snapshot, gets about
half of the CPU: on a busy head the scrape p99 was 52 ms in normal operation against 18 ms with
that work gone (docs/benchmarks.md). Background loops call ``yield_to_scrapes()`` between rows; while
any scrape is in progress it blocks, and a blocked thread releases the interpreter to the scrape.

A wait is bounded (``max_wait_seconds``); a thread whose wait ran out then runs as long before it
waits again, so back-to-back scrapers can halve the pace of Ray reads at most, never stop them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

DEFAULT_MAX_WAIT_SECONDS = 0.5


class ScrapePriority:
    def __init__(self, max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS) -> None:
        self._serving = 0
        self.served = 0  # scrapes completed since start
        self.waiting = 0  # background threads waiting now
        self._idle = threading.Condition()
        self._this_thread = threading.local()  # a scrape's own thread never waits for itself
        self._max_wait_seconds = max_wait_seconds

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Mark a scrape in progress for the duration of the block."""
        with self._idle:
            self._serving += 1
        self._this_thread.serving = True
        try:
            yield
        finally:
            self._this_thread.serving = False
            with self._idle:
                self._serving -= 1
                self.served += 1
                if self._serving == 0:
                    self._idle.notify_all()

    @property
    def scrapes_in_progress(self) -> int:
        return self._serving

    def yield_to_scrapes(self) -> bool:
        """Wait (bounded) while a scrape is in progress; True when it had to. Costs one comparison
        when no scrape is, so it can be called for every row."""
        if not self._serving:  # unlocked read: a stale answer only delays or skips one short wait
            return False
        local = self._this_thread
        if getattr(local, "serving", False):
            return False
        if time.monotonic() < getattr(local, "free_until", 0.0):
            return False
        with self._idle:
            self.waiting += 1
            try:
                idle = self._idle.wait_for(lambda: self._serving == 0, timeout=self._max_wait_seconds)
            finally:
                self.waiting -= 1
        if not idle:
            # Scrapes without a gap (many scrapers): run as long as we waited before waiting again,
            # so this work keeps at least half its pace instead of a wait on every row.
            local.free_until = time.monotonic() + self._max_wait_seconds
        return True

    def run_between_scrapes(self, work: Callable[[], None]) -> None:
        """Run ``work`` when no scrape is in progress (waiting at most the bounded wait); a scrape that
        arrives meanwhile starts after it, so a short pause such as a garbage collection never lands
        inside a scrape."""
        with self._idle:
            self._idle.wait_for(lambda: self._serving == 0, timeout=self._max_wait_seconds)
            work()

    def wait_for_quiet_after_scrape(self, served_before: int, timeout: float) -> bool:
        """Wait until a scrape has completed since ``served_before`` and none is in progress; False on
        timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self.served > served_before and self._serving == 0, timeout=timeout)


# One per process: the HTTP server marks scrapes, the refresher and the subscribers yield to them.
SCRAPES = ScrapePriority()


def yield_to_scrapes() -> bool:
    return SCRAPES.yield_to_scrapes()
