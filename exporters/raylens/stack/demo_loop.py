"""Keeps the `raylens up` demo alive: a steady Serve load, and jobs resubmitted every cycle.

Started once the local head is up, it submits the Serve app with traffic that runs until the stack
stops (carol, search), then every ``cycle_seconds`` a Ray Data pipeline and a short Ray Train run
(alice and bob take turns on each, project vision), an object-store spill (dave, search), and every
third cycle a job that fails on purpose (carol, search). So whenever someone opens the dashboards,
the last few minutes hold Serve latency and errors, Data and Train runs, spend by project and user,
a spill and, now and then, a failure.

A cycle starts only once the previous cycle's jobs have ended, so on a slow machine cycles stretch
instead of piling up. The state is written atomically to ``<state dir>/demo.json`` for ``raylens
status``: the cycle, when the next one starts, each job of the current cycle with its status, and
the last few cycles' outcomes. It runs as a thread of the `raylens up` process, so Ctrl-C and
`raylens down` stop it with the stack; the jobs end with the head.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from raylens.stack.demo import WORKLOADS, free_serve_port

log = logging.getLogger("raylens.demo")

DEMO_STATE_FILE = "demo.json"
DEFAULT_CYCLE_SECONDS = 240.0
# Each cycle's jobs finish well inside the cycle, so runs never pile up on a 2-core machine.
DATA_SECONDS = 60
TRAIN_EPOCHS, TRAIN_EPOCH_SECONDS = 15, 3.0
FAILING_EVERY = 3
HISTORY_CYCLES = 5
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


@dataclass
class DemoRun:
    kind: str
    submission_id: str
    user: str
    project: str
    status: str = "PENDING"


def cycle_jobs(cycle: int, run_id: str) -> list[tuple[str, str, dict[str, str]]]:
    """(kind, entrypoint, metadata) of the jobs submitted in ``cycle`` (numbered from 1)."""
    python = sys.executable
    data_user, train_user = ("alice", "bob") if cycle % 2 else ("bob", "alice")
    jobs = [
        (
            "data",
            f"{python} {WORKLOADS / 'data_pipeline.py'} --duration {DATA_SECONDS}",
            {"user": data_user, "project": "vision", "team": "ml", "workload": "data"},
        ),
        (
            "train",
            f"{python} {WORKLOADS / 'train_run.py'} --epochs {TRAIN_EPOCHS} --seconds-per-epoch {TRAIN_EPOCH_SECONDS}",
            {"user": train_user, "project": "vision", "team": "ml", "workload": "train"},
        ),
        (
            "spill",
            f"{python} {WORKLOADS / 'spill.py'}",
            {"user": "dave", "project": "search", "team": "search", "workload": "tasks"},
        ),
    ]
    if cycle % FAILING_EVERY == 0:
        jobs.append(
            (
                "failing",
                f"{python} {WORKLOADS / 'nightly_eval.py'}",
                {"user": "carol", "project": "search", "team": "search", "workload": "tasks"},
            )
        )
    return [(kind, entrypoint, metadata) for kind, entrypoint, metadata in jobs]


class DemoLoop:
    def __init__(
        self,
        dashboard_url: str,
        state_dir: Path,
        cycle_seconds: float = DEFAULT_CYCLE_SECONDS,
        duration_seconds: float = 0.0,
        say: Callable[[str], None] = print,
    ):
        from ray.job_submission import JobSubmissionClient

        self._client = JobSubmissionClient(dashboard_url)
        self._state_file = state_dir / DEMO_STATE_FILE
        self._cycle_seconds = cycle_seconds
        self._ends_at = time.time() + duration_seconds if duration_seconds > 0 else None
        self._say = say
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_id = time.strftime("%Y%m%d-%H%M%S")
        self.serve: DemoRun | None = None
        self.cycle = 0
        self.cycle_started_at = 0.0
        self.runs: list[DemoRun] = []
        self.next_cycle_at = 0.0
        self.history: list[dict] = []  # finished cycles, newest last

    def start(self) -> list[str]:
        """Submit the Serve app and the first cycle now; later cycles from a background thread."""
        duration = 0 if self._ends_at is None else int(self._ends_at - time.time())
        port = free_serve_port()
        self.serve = self._submit(
            "serve",
            f"{sys.executable} {WORKLOADS / 'serve_app.py'} --port {port} --duration {duration}",
            {"user": "carol", "project": "search", "team": "search", "workload": "serve"},
            f"demo-serve-{self._run_id}",
        )
        self._next_cycle()
        self._thread = threading.Thread(target=self._loop, name="demo-loop", daemon=True)
        self._thread.start()
        return [self.serve.submission_id, *(run.submission_id for run in self.runs)]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(min(10.0, max(0.0, self.next_cycle_at - time.time()))):
            try:
                self._refresh_statuses()
                due = time.time() >= self.next_cycle_at and (self._ends_at is None or time.time() < self._ends_at)
                if due and all(run.status in TERMINAL_STATUSES for run in self.runs):
                    self._next_cycle()
                self._write_state()
            except Exception as error:  # the head may be busy or restarting: try again next tick
                log.warning("demo loop", extra={"error": f"{type(error).__name__}: {error}"})

    def _next_cycle(self) -> None:
        self.cycle += 1
        self.cycle_started_at = time.time()
        self.next_cycle_at = self.cycle_started_at + self._cycle_seconds
        self.runs = [
            self._submit(kind, entrypoint, metadata, f"demo-{kind}-{self._run_id}-c{self.cycle}")
            for kind, entrypoint, metadata in cycle_jobs(self.cycle, self._run_id)
        ]
        self._write_state()

    def _submit(self, kind: str, entrypoint: str, metadata: dict[str, str], submission_id: str) -> DemoRun:
        self._client.submit_job(entrypoint=entrypoint, submission_id=submission_id, metadata=metadata)
        return DemoRun(kind, submission_id, metadata["user"], metadata["project"])

    def _refresh_statuses(self) -> None:
        for run in [*self.runs, *([self.serve] if self.serve else [])]:
            if run.status not in TERMINAL_STATUSES:
                run.status = str(self._client.get_job_status(run.submission_id).value)
        recorded = self.history and self.history[-1]["cycle"] == self.cycle
        if self.runs and not recorded and all(run.status in TERMINAL_STATUSES for run in self.runs):
            finished = {"cycle": self.cycle, "started_at": self.cycle_started_at, "ended_at": time.time()}
            self.history = [*self.history, {**finished, "runs": [asdict(run) for run in self.runs]}][-HISTORY_CYCLES:]

    def _write_state(self) -> None:
        state = {
            "cycle": self.cycle,
            "cycle_started_at": self.cycle_started_at,
            "cycle_seconds": self._cycle_seconds,
            "next_cycle_at": self.next_cycle_at,
            "ends_at": self._ends_at,
            "serve": asdict(self.serve) if self.serve else None,
            "runs": [asdict(run) for run in self.runs],
            "history": self.history,
            "updated_at": time.time(),
        }
        temporary = self._state_file.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(state, indent=2))
        os.replace(temporary, self._state_file)


def read_demo_state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / DEMO_STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def describe_demo(state: dict, now: float | None = None) -> list[str]:
    """Lines for `raylens status`: what the demo runs now, when it resubmits, how the last cycle ended."""
    now = time.time() if now is None else now
    next_in = int(state["next_cycle_at"] - now)
    if state.get("ends_at") is not None and now >= state["ends_at"]:
        when = "no more cycles (duration reached)"
    elif next_in >= 0:
        when = f"next in {next_in}s"
    else:
        when = "next as soon as this cycle's jobs end"
    lines = [f"cycle {state['cycle']}, {when}"]
    runs = ([state["serve"]] if state.get("serve") else []) + state.get("runs", [])
    for run in runs:
        lines.append(f"{run['kind']:<8} {run['status']:<10} {run['user']}/{run['project']}  {run['submission_id']}")
    for cycle in state.get("history", [])[-1:]:
        outcomes = ", ".join(f"{run['kind']} {run['status'].lower()}" for run in cycle["runs"])
        lines.append(f"last finished cycle {cycle['cycle']}: {outcomes}")
    return lines
