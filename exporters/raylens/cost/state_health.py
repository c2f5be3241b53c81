"""What happened to the cost state file: restores that failed, files set aside, saves that failed.

Starting money afresh is data loss an operator must see, and a state that cannot be saved is data loss
waiting for the next restart; both are logged and exported here, and alerted on by
``RaylensCostStateSetAside`` and ``RaylensCostStatePersistFailing`` (docs/runbooks/). Sample::

    raylens_cost_state_restore_failures_total 1.0
    raylens_cost_state_set_aside_files 1.0
    raylens_cost_state_persist_failures_total 0.0
    raylens_cost_state_last_persist_timestamp_seconds 1.7829e+09
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from raylens.cost.state import STATE_FILE

log = logging.getLogger("raylens.cost")

SET_ASIDE_MARK = ".unreadable-"


def set_aside_name(path: Path, now: float) -> Path:
    """``cost-state.json.unreadable-20260501T120000Z`` (UTC), never an existing file's name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    candidate = path.with_name(f"{path.name}{SET_ASIDE_MARK}{stamp}")
    serial = 1
    while candidate.exists():
        serial += 1
        candidate = path.with_name(f"{path.name}{SET_ASIDE_MARK}{stamp}-{serial}")
    return candidate


def set_aside_files(state_dir: Path) -> list[Path]:
    """State files set aside in ``state_dir`` and still there (an operator deletes or restores them)."""
    prefix = f"{STATE_FILE}{SET_ASIDE_MARK}"
    try:
        with os.scandir(state_dir) as entries:
            return sorted(Path(entry.path) for entry in entries if entry.name.startswith(prefix))
    except OSError:
        return []


class StateHealth:
    """Counts and times for the state file, shared by the loader (restore) and the collector (save)."""

    def __init__(self, state_dir: Path | None, clock: Callable[[], float] = time.time):
        self.state_dir = state_dir
        self._clock = clock
        self._lock = threading.Lock()
        self.restore_failures = 0
        self.persist_failures = 0
        self.last_persist: float | None = None
        self._failing = False

    def restore_failed(self, path: Path, aside: Path, reason: str) -> None:
        with self._lock:
            self.restore_failures += 1
        log.error(
            "cost state unreadable; set aside, spend restarts from what Ray still knows",
            extra={"path": str(path), "set_aside_as": str(aside), "error": reason},
        )

    def persisted(self) -> None:
        with self._lock:
            self.last_persist = self._clock()
            recovered, self._failing = self._failing, False
        if recovered:
            log.info("cost state saved again", extra={"path": str(self._path())})

    def persist_failed(self, error: OSError) -> None:
        with self._lock:
            self.persist_failures += 1
            first, self._failing = not self._failing, True
        # Every failure is logged while it lasts: each is a scrape whose spend counters are held back.
        log.error(
            "cannot save the cost state; spend counters are held back until it is saved (retried every scrape)",
            extra={"path": str(self._path()), "error": f"{type(error).__name__}: {error}", "first_failure": first},
        )

    def _path(self) -> Path | None:
        return self.state_dir / STATE_FILE if self.state_dir is not None else None

    def metrics(self) -> Iterator[Metric]:
        with self._lock:
            restore_failures, persist_failures, last_persist = (
                self.restore_failures,
                self.persist_failures,
                self.last_persist,
            )
        yield CounterMetricFamily(
            "raylens_cost_state_restore_failures",
            "Times the cost state could not be restored at start-up (unreadable, corrupt or of another shape) "
            "and was set aside; spend restarted from what Ray still knows.",
            value=restore_failures,
        )
        aside = set_aside_files(self.state_dir) if self.state_dir is not None else []
        yield GaugeMetricFamily(
            "raylens_cost_state_set_aside_files",
            "Unreadable cost state files set aside in cost.state_dir and not yet restored or deleted.",
            value=len(aside),
        )
        yield CounterMetricFamily(
            "raylens_cost_state_persist_failures",
            "Saves of the cost state that failed (disk full, read-only, I/O error); each holds back that "
            "scrape's spend counters.",
            value=persist_failures,
        )
        if last_persist is not None:
            yield GaugeMetricFamily(
                "raylens_cost_state_last_persist_timestamp_seconds",
                "When the cost state was last saved, Unix time.",
                value=last_persist,
            )
