"""What happened to the cost state file at start-up: restores that failed, and files set aside.

Starting money afresh is data loss an operator must see: it is logged and exported here, and alerted
on by ``RaylensCostStateSetAside`` (docs/runbooks/) for as long as a set-aside file is in the state
directory. (Saves that fail are the collector's ``raylens_cost_state_save_errors_total``.) Sample::

    raylens_cost_state_restore_failures_total 1.0
    raylens_cost_state_set_aside_files 1.0
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
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
    """Filled in by the loader (``restore_state``), exported by the cost collector."""

    def __init__(self, state_dir: Path | None):
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self.restore_failures = 0

    def restore_failed(self, path: Path, aside: Path, reason: str) -> None:
        with self._lock:
            self.restore_failures += 1
        log.error(
            "cost state unreadable; set aside, spend restarts from what Ray still knows",
            extra={"path": str(path), "set_aside_as": str(aside), "error": reason},
        )

    def metrics(self) -> Iterator[Metric]:
        with self._lock:
            restore_failures = self.restore_failures
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
