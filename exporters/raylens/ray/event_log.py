"""Records workspace events: derives them from each new snapshot, appends them to a JSON-lines log,
counts them, and remembers enough to neither repeat nor lose any across exporter restarts.

One line of the log (``events.log_file``)::

    {"cause": "unexpected_termination", "details": {"ip": "10.0.0.7", "market": "spot", "node_id": "ab12…",
     "node_type": "gpu", "state_message": "Unexpected termination: health check failed …"},
     "id": "session_…/node/ab12…/died", "kind": "node_died", "message": "node 10.0.0.7 died: Unexpected …",
     "observed_at": "2026-12-06T22:21:55.120Z", "session": "session_…", "severity": "warning",
     "subject": "node 10.0.0.7 (ab12cd34)", "ts": "2026-12-06T22:21:53.929Z"}

Beside it, ``<log>.state.json`` holds the previous snapshot's nodes and jobs, Serve statuses and the
ids already emitted. At start the recorder compares the first snapshot with that saved one, so a
job that failed while the exporter was down still gets its event, and an event written just before
a crash (before the state was saved) is not written again: ids are deterministic.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from prometheus_client.core import CounterMetricFamily

from raylens.config.events import EventsConfig
from raylens.files import FileMissing, FileRefused
from raylens.files import read_json as read_bounded_json
from raylens.jsonl import append_lines, prune_older_than, rfc3339, write_json_atomically
from raylens.ray.events import KNOWN_CAUSES, Event, derive_events, derive_serve_events
from raylens.ray.serve_status import (
    ApplicationStatus,
    DeploymentStatus,
    ServeSnapshot,
    ServeStatusUnavailable,
    fetch_serve_status,
)
from raylens.ray.snapshot import ClusterSnapshot, JobSnapshot, NodeSnapshot, SourceStatus

log = logging.getLogger("raylens.events")

STATE_VERSION = 1
MAX_REMEMBERED_EVENT_IDS = 10_000
TAIL_BYTES_READ_AT_START = 1 << 20
PRUNE_EVERY_SECONDS = 3600.0
ServeFetcher = Callable[[str, float], ServeSnapshot]


def default_events_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "raylens" / "events.jsonl"


def event_line(event: Event, observed_at: float) -> dict[str, Any]:
    return {
        "ts": rfc3339(event.time),
        "observed_at": rfc3339(observed_at),
        "id": event.id,
        "kind": event.kind,
        "severity": event.severity,
        "session": event.session,
        "subject": event.subject,
        "cause": event.cause_label,
        "message": event.message,
        "details": dict(event.details),
    }


# --- what is persisted between restarts ----------------------------------------------------------


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def _plain(value: Any) -> Any:
    """A snapshot record as JSON-ready values (``asdict`` cannot copy read-only mappings)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {item.name: _plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def snapshot_state(snapshot: ClusterSnapshot) -> dict[str, Any]:
    """The part of a snapshot events are derived from, as JSON."""
    nodes = [_plain(replace(node, object_store=None)) for node in snapshot.nodes]
    return {
        "taken_at": snapshot.taken_at,
        "session_name": snapshot.session_name,
        "ray_version": snapshot.ray_version,
        "dashboard_url": snapshot.dashboard_url,
        "nodes": nodes,
        "jobs": [_plain(job) for job in snapshot.jobs],
        "sources": {name: _plain(status) for name, status in snapshot.sources.items() if name in ("nodes", "jobs")},
        "fetched_at": {name: when for name, when in snapshot.fetched_at.items() if name in ("nodes", "jobs")},
    }


def snapshot_from_state(state: Mapping[str, Any]) -> ClusterSnapshot:
    nodes = []
    for row in state.get("nodes", []):
        values = dict(row)
        for key in ("labels", "resources_total"):
            values[key] = _frozen(values.get(key))
        if values.get("resources_used") is not None:
            values["resources_used"] = _frozen(values["resources_used"])
        nodes.append(NodeSnapshot(**values))
    jobs = [JobSnapshot(**{**row, "metadata": _frozen(row.get("metadata"))}) for row in state.get("jobs", [])]
    return ClusterSnapshot(
        taken_at=float(state.get("taken_at", 0.0)),
        duration_seconds=0.0,
        dashboard_url=str(state.get("dashboard_url", "")),
        session_name=str(state.get("session_name", "")),
        ray_version=str(state.get("ray_version", "")),
        nodes=tuple(nodes),
        jobs=tuple(jobs),
        sources=_frozen({name: SourceStatus(**status) for name, status in state.get("sources", {}).items()}),
        fetched_at=_frozen({name: float(when) for name, when in state.get("fetched_at", {}).items()}),
    )


def serve_state(snapshot: ServeSnapshot) -> dict[str, Any]:
    return _plain(snapshot.applications)


def serve_from_state(state: Mapping[str, Any]) -> ServeSnapshot:
    applications = {}
    for name, app in state.items():
        deployments = {d: DeploymentStatus(**s) for d, s in (app.get("deployments") or {}).items()}
        applications[name] = ApplicationStatus(
            app.get("status", ""), app.get("message", ""), app.get("last_deployed_time"), _frozen(deployments)
        )
    return ServeSnapshot(_frozen(applications))


# Serve's statuses are asked at most this often (snapshots arrive about once a second).
SERVE_CHECK_SECONDS = 10.0


class EventRecorder:
    """Feed it every new snapshot (``observe``); read ``counts()`` for ``raylens_ray_events_total``.

    Never raises: a failure to write is logged and retried with the next snapshot (the events are
    derived again then, since the saved state did not move on). ``counts()`` never waits: the Serve
    status is asked outside the lock (at most every ``SERVE_CHECK_SECONDS``), and the counts a
    scrape reads are an immutable copy published after each observation.
    """

    def __init__(
        self,
        config: EventsConfig,
        serve_fetcher: ServeFetcher = fetch_serve_status,
        clock: Callable[[], float] = time.time,
    ):
        self._config = config
        self.path = config.log_file or default_events_path()
        self._state_path = self.path.with_name(self.path.name + ".state.json")
        self._serve_fetcher = serve_fetcher
        self._clock = clock
        self._lock = threading.Lock()
        self._previous: ClusterSnapshot | None = None
        self._serve: ServeSnapshot | None = None
        self._emitted: OrderedDict[str, None] = OrderedDict()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._sessions: set[str] = set()
        self._last_taken_at: float | None = None
        self._saved_text = ""
        self._next_prune = 0.0
        self._serve_checked_at = float("-inf")
        self._published: dict[tuple[str, str, str], float] = {}
        self.write_errors = 0
        self.disabled_reason = self._claim()
        if not self.disabled_reason:
            self._load()

    def _claim(self) -> str:
        """Hold ``<log>.lock`` for this process's life: two exporters sharing one events log would
        repeat each other's events. The second one records nothing and says so."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = self.path.with_name(self.path.name + ".lock").open("w")
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            reason = f"cannot lock {self.path}.lock ({error}): another exporter records to this events log"
            log.warning("events disabled", extra={"path": str(self.path), "reason": reason})
            return reason
        return ""

    # --- state file ------------------------------------------------------------------------------

    def _load(self) -> None:
        self._emitted = OrderedDict.fromkeys(_recent_ids(self.path))
        try:
            state = read_bounded_json(self._state_path)  # size, depth and UTF-8 bounded (raylens.files)
        except FileMissing:
            return
        except FileRefused as error:
            log.warning(
                "events state unreadable; starting fresh", extra={"path": str(self._state_path), "error": str(error)}
            )
            return
        try:
            if not isinstance(state, dict):
                raise TypeError(f"expected a JSON object, got {type(state).__name__}")
            if state.get("previous"):
                self._previous = snapshot_from_state(state["previous"])
            if state.get("serve") is not None:
                self._serve = serve_from_state(state["serve"])
            self._emitted = OrderedDict.fromkeys([*state.get("emitted", []), *self._emitted])
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
            log.warning("events state has an unexpected shape; starting fresh", extra={"error": str(error)[:300]})
            self._previous, self._serve, self._emitted = None, None, OrderedDict()

    def _save(self) -> None:
        state = {
            "version": STATE_VERSION,
            "previous": snapshot_state(self._previous) if self._previous is not None else None,
            "serve": serve_state(self._serve) if self._serve is not None else None,
            "emitted": list(self._emitted),
        }
        text = json.dumps(state, sort_keys=True, default=str)
        if text != self._saved_text:
            write_json_atomically(self._state_path, state)
            self._saved_text = text

    # --- observing ----------------------------------------------------------------------------------

    def observe(self, snapshot: ClusterSnapshot) -> list[Event]:
        """Derive, write and count the events since the previous snapshot; returns the new ones."""
        if self.disabled_reason or snapshot.taken_at == self._last_taken_at:
            return []  # disabled, or a snapshot seen already
        serve = self._fetch_serve(snapshot)  # network, outside the lock
        with self._lock:
            try:
                return self._observe(snapshot, serve)
            except Exception as error:  # never break a scrape over events
                self.write_errors += 1
                log.warning(
                    "cannot record events", extra={"path": str(self.path), "error": f"{type(error).__name__}: {error}"}
                )
                return []

    def _fetch_serve(self, snapshot: ClusterSnapshot) -> ServeSnapshot | None:
        """Serve's statuses when due (snapshots come about once a second), else ``None``."""
        now = self._clock()
        if not (self._config.serve and snapshot.dashboard_url) or now - self._serve_checked_at < SERVE_CHECK_SECONDS:
            return None
        self._serve_checked_at = now
        try:
            return self._serve_fetcher(snapshot.dashboard_url, self._config.serve_timeout_seconds)
        except ServeStatusUnavailable as error:
            log.debug("serve status unavailable", extra={"error": str(error)})
            return None

    def _observe(self, snapshot: ClusterSnapshot, fetched: ServeSnapshot | None) -> list[Event]:
        events = derive_events(self._previous, snapshot)
        serve = self._serve
        if fetched is not None:
            events += derive_serve_events(self._serve, fetched, snapshot.session_name, snapshot.taken_at)
            serve = fetched
        fresh = [event for event in events if event.id not in self._emitted]
        append_lines(self.path, [event_line(event, snapshot.taken_at) for event in fresh])
        for event in fresh:
            self._emitted[event.id] = None
            self._counts[(event.session, event.kind, event.cause_label)] += 1
        while len(self._emitted) > MAX_REMEMBERED_EVENT_IDS:
            self._emitted.popitem(last=False)
        if snapshot.session_name:
            self._sessions = {snapshot.session_name} | ({self._previous.session_name} if self._previous else set())
            self._sessions.discard("")
        self._previous = _carry_forward(self._previous, snapshot)
        self._serve = serve
        self._last_taken_at = snapshot.taken_at
        self._publish()
        self._save()
        self._prune()
        return fresh

    def _publish(self) -> None:
        zeros = {
            (session, kind, cause): 0.0
            for session in self._sessions
            for kind, causes in KNOWN_CAUSES.items()
            for cause in causes
        }
        self._published = zeros | dict(self._counts)

    def _prune(self) -> None:
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_SECONDS
        dropped = prune_older_than(self.path, now - self._config.retention_days * 86400)
        if dropped:
            log.info("pruned old events", extra={"path": str(self.path), "dropped": dropped})

    def close(self) -> None:
        """Release the events log to another recorder (tests; a collector replaced in-process)."""
        lock_file = getattr(self, "_lock_file", None)
        if lock_file is not None:
            lock_file.close()
            self._lock_file = None

    def counts(self) -> dict[tuple[str, str, str], float]:
        """Events counted per (session, kind, cause); every known cause of the current session
        starts at 0, so a first event is an increase PromQL sees. Never waits on ``observe``."""
        return self._published


def _recent_ids(path: Path, tail_bytes: int = TAIL_BYTES_READ_AT_START) -> list[str]:
    """Ids of the events at the end of the log: written just before a crash that came before the
    state file was saved, they must not be written again."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - tail_bytes))
            tail = file.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []
    ids = []
    for line in tail[1:] if len(tail) > 1 else tail:  # the first may be cut in half
        try:
            ids.append(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return ids


def _carry_forward(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> ClusterSnapshot:
    """``current`` for the sources that answered; the last good answer for those that did not, so a
    failed round does not hide a transition (nor invent one) at the next comparison."""
    if previous is None:
        return replace(current, actors=(), tasks=())
    nodes, jobs = current.nodes, current.jobs
    sources, fetched = dict(current.sources), dict(current.fetched_at)
    for name in ("nodes", "jobs"):
        if not current.has(name) and previous.has(name):
            if name in previous.sources:
                sources[name] = previous.sources[name]
            if name in previous.fetched_at:
                fetched[name] = previous.fetched_at[name]
    if not current.has("nodes") and previous.has("nodes"):
        nodes = previous.nodes
    if not current.has("jobs") and previous.has("jobs"):
        jobs = previous.jobs
    session = current.session_name or previous.session_name
    return replace(
        current,
        nodes=nodes,
        jobs=jobs,
        actors=(),
        tasks=(),
        sources=_frozen(sources),
        fetched_at=_frozen(fetched),
        session_name=session,
    )


def event_counter_family(counts: Mapping[tuple[str, str, str], float]) -> CounterMetricFamily:
    """``raylens_ray_events_total{SessionName, kind, cause}`` (kinds: ``raylens.ray.events.EVENT_KINDS``;
    causes: Ray's reason and status names, lower case, else ``other``)."""
    family = CounterMetricFamily(
        "raylens_ray_events",
        "Workspace events derived from Ray state since the exporter started: nodes joining, leaving, dying "
        "or preempted, jobs starting and finishing, Serve status changes; by kind and cause.",
        labels=["SessionName", "kind", "cause"],
    )
    for (session, kind, cause), count in sorted(counts.items()):
        family.add_metric([session, kind, cause], count)
    return family
