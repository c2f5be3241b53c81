"""Writes the cost engine's state and explain log to the state directory.

The state is written at every accounting step, before its counters are shown (a restarted exporter
never shows a counter lower than Prometheus saw). The explain log is only for ``raylens cost
explain``; on large clusters it is megabytes, so it is written at most once a minute, from a copy, by
a background thread off the scrape's path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from raylens.cost.engine import CostEngine
from raylens.cost.state import EXPLAIN_FILE, STATE_FILE, write_json_atomically

log = logging.getLogger("raylens.cost")

EXPLAIN_SAVE_SECONDS = 60.0


class StateWriter:
    """Not thread-safe on its own: the cost collector calls it with its accounting lock held."""

    def __init__(self, state_dir: Path | None, engine: CostEngine, clock: Callable[[], float]):
        self._state_dir = state_dir
        self._engine = engine
        self._clock = clock
        self._explain_saved_at = float("-inf")
        self._explain_writer: threading.Thread | None = None

    def save(self, force_explain: bool = False) -> None:
        """Write the state, and the explain log when a minute has passed (``force_explain``: now,
        before returning, after any background write finished). Raises ``OSError`` when the state
        cannot be written; a failed explain write is only logged. Nothing happens without a state
        directory."""
        if self._state_dir is None:
            return
        write_json_atomically(self._state_dir / STATE_FILE, self._engine.state.to_json())
        now = self._clock()
        if not force_explain and now - self._explain_saved_at < EXPLAIN_SAVE_SECONDS:
            return
        writer = self._explain_writer
        if writer is not None and writer.is_alive():
            if not force_explain:
                return  # the previous write is still going; try again next scrape
            writer.join()
        self._explain_saved_at = now
        path, snapshot = self._state_dir / EXPLAIN_FILE, self._engine.explain.to_json(copy=True)

        def write() -> None:
            try:
                write_json_atomically(path, snapshot)
            except OSError as error:
                log.warning("cannot write the explain log", extra={"path": str(path), "error": str(error)})

        if force_explain:
            write()
            return
        self._explain_writer = threading.Thread(target=write, name="cost-explain", daemon=True)
        self._explain_writer.start()
