"""Reads Ray state in the background, so a scrape never waits on Ray.

Each source (``raylens.ray.sources``) is fetched on its own interval (``ray.sources.<name>``), with
±``ray.refresh_jitter_ratio`` jitter so sources and exporters do not fire in step, its own timeout,
and after a failure an exponential backoff (the interval doubled per consecutive failure, at most
``ray.backoff_max_seconds``). A source still in flight is never asked again, so a slow dashboard
costs at most one outstanding request per source.

After every answer the newest answer of each source is composed into a fresh immutable
``ClusterSnapshot`` and published: ``current()`` returns it at once, and subscribers (the cost
engine, lifecycle counters) get it on their own threads, newest-only, so a slow subscriber never
holds up fetching and never works through a backlog.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from raylens.config import RayConfig
from raylens.ray.snapshot import ClusterSnapshot
from raylens.ray.sources import DashboardClient, SourceResult
from raylens.ray.state import compose
from raylens.scrape_priority import yield_to_scrapes

log = logging.getLogger("raylens.ray")

Subscriber = Callable[[ClusterSnapshot], None]


@dataclass
class SourceHealth:
    """How one source is faring; read by the ray collector for its health series."""

    interval_seconds: float
    timeout_seconds: float
    attempts: int = 0
    errors: int = 0
    consecutive_failures: int = 0
    in_flight: bool = False
    next_due: float = 0.0
    """Monotonic time of the next attempt."""
    last_attempt: SourceResult | None = None
    last_answer: SourceResult | None = None


class LatestOnlyWorker:
    """Runs ``handle`` on its own thread for the newest value offered; values offered while it is
    busy replace each other, so only the latest is handled next."""

    def __init__(self, name: str, handle: Subscriber):
        self._handle = handle
        self._condition = threading.Condition()
        self._pending: ClusterSnapshot | None = None
        self._stopped = False
        self.handled = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, value: ClusterSnapshot) -> None:
        with self._condition:
            self._pending = value
            self._condition.notify()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._stopped:
                    self._condition.wait()
                if self._stopped:
                    return
                value, self._pending = self._pending, None
            yield_to_scrapes()  # start a snapshot's work between scrapes, not during one
            try:
                self._handle(value)
            except Exception:  # a subscriber's bug must not stop the others or the fetching
                log.exception("snapshot subscriber failed", extra={"subscriber": self._thread.name})
            self.handled += 1


class StateRefresher:
    """Background reads of one Ray cluster. Thread-safe; share one per cluster (``shared_refresher``)."""

    def __init__(
        self,
        config: RayConfig,
        client: DashboardClient | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        self._config = config
        self._client = client or DashboardClient(config, clock=clock, monotonic=monotonic)
        self._clock = clock
        self._monotonic = monotonic
        self._random = rng or random.Random()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        sources = self._client.sources()
        self._pool = ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="ray-refresh")
        self._health = {
            source: SourceHealth(config.source_interval(source), config.source_timeout(source)) for source in sources
        }
        self._current: ClusterSnapshot | None = None
        self._generation = 0
        self._dashboard_url = ""
        self._subscribers: list[LatestOnlyWorker] = []

    # --- reading -------------------------------------------------------------------------------

    def current(self) -> ClusterSnapshot | None:
        """The newest snapshot, immediately; ``None`` until a source first answered."""
        return self._current

    def health(self) -> dict[str, SourceHealth]:
        """A copy of every source's health, for one exposition."""
        with self._lock:
            return {source: SourceHealth(**vars(health)) for source, health in self._health.items()}

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self._health)

    def subscribe(self, name: str, handle: Subscriber) -> LatestOnlyWorker:
        """Call ``handle`` (on a thread of its own) with each new snapshot, newest only."""
        worker = LatestOnlyWorker(f"ray-snapshot-{name}", handle)
        self._subscribers.append(worker)
        if self._current is not None:
            worker.offer(self._current)
        return worker

    # --- running -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._schedule, name="ray-refresher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for worker in self._subscribers:
            worker.stop()

    def refresh_now(self, sources: Iterable[str] | None = None) -> ClusterSnapshot | None:
        """Fetch ``sources`` (default: all) now, in parallel, wait for them, and return the
        snapshot published after the last one. For tests and one-shot commands."""
        wanted = [source for source in (sources or self._health) if source in self._health]
        with self._lock:
            wanted = [source for source in wanted if not self._health[source].in_flight]
            for source in wanted:
                self._health[source].in_flight = True
        futures = [self._pool.submit(self._fetch, source) for source in wanted]
        for future in futures:
            future.result()
        return self._current

    def _schedule(self) -> None:
        with self._wake:
            while not self._stopped.is_set():
                now = self._monotonic()
                for source, health in self._health.items():
                    if not health.in_flight and health.next_due <= now:
                        health.in_flight = True
                        self._pool.submit(self._fetch, source)
                waiting = [health.next_due for health in self._health.values() if not health.in_flight]
                delay = min(waiting, default=now + 1.0) - now
                self._wake.wait(timeout=min(max(delay, 0.01), 1.0))

    def _fetch(self, source: str) -> None:
        health = self._health[source]
        try:
            result = self._client.fetch(source, health.timeout_seconds)
        except Exception as error:  # a bug in parsing must not stop the source for good
            log.exception("ray source fetch crashed", extra={"source": source})
            result = SourceResult(source, self._clock(), 0.0, error=f"{type(error).__name__}: {error}")
        with self._wake:
            self._record(source, health, result)
            if result.ok and not self._dashboard_url:
                self._dashboard_url = self._client.url(health.timeout_seconds)
            self._generation += 1
            snapshot = compose(
                self._config,
                {name: h.last_answer for name, h in self._health.items() if h.last_answer is not None},
                {name: h.last_attempt for name, h in self._health.items() if h.last_attempt is not None},
                self._dashboard_url,
                generation=self._generation,
                now=self._clock(),
            )
            self._current = snapshot
            self._wake.notify_all()
        for worker in self._subscribers:
            worker.offer(snapshot)

    def _record(self, source: str, health: SourceHealth, result: SourceResult) -> None:
        health.in_flight = False
        health.attempts += 1
        health.last_attempt = result
        interval = health.interval_seconds
        jitter = 1.0 + self._config.refresh_jitter_ratio * (2.0 * self._random.random() - 1.0)
        if result.ok:
            if health.consecutive_failures:
                log.info("ray source recovered", extra={"source": source, "failures": health.consecutive_failures})
            health.consecutive_failures = 0
            health.last_answer = result
            health.next_due = self._monotonic() + interval * jitter
            return
        health.errors += 1
        health.consecutive_failures += 1
        backoff = min(self._config.backoff_max_seconds, interval * 2 ** (health.consecutive_failures - 1))
        health.next_due = self._monotonic() + backoff * jitter
        log.warning(
            "ray source failed",
            extra={
                "source": source,
                "error": result.error,
                "consecutive_failures": health.consecutive_failures,
                "retry_in_seconds": round(backoff * jitter, 2),
            },
        )
        attempts = [h.last_attempt for h in self._health.values() if h.last_attempt is not None]
        if len(attempts) == len(self._health) and all(a.connection_failed for a in attempts):
            self._client.forget_url()  # the dashboard may come back elsewhere (a new head)
            self._dashboard_url = ""
