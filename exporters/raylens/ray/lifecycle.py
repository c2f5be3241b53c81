"""Counters of things that happen in a Ray cluster, derived from successive snapshots.

Ray keeps state (a job table, a node table, bounded task history), not event counts, so raylens
counts transitions it observes: a job reaching a final status, a node joining or leaving, a task
attempt failing, an actor dying unexpectedly. Each thing is counted
once per exporter life, keyed by its id, however often it is seen again and whether or not its own
series have left the exposition (finished-job grace period). Counters never decrease.

Baseline: what is already finished when the exporter first sees a source is history, not news, and
is not counted — otherwise every exporter restart would look like a burst of failures to
``increase()``. From then on everything new counts, including the whole content of a new Ray
session (a restarted head), since it happened while the exporter watched.

Memory stays bounded: ids are forgotten once Ray itself has dropped them (complete listings only;
a truncated listing proves nothing about absence) and per-source id sets are capped.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping

from raylens.ray.snapshot import ClusterSnapshot

MAX_REMEMBERED_IDS = 200_000
NODE_REMOVAL_REASONS = {
    "EXPECTED_TERMINATION": "expected_termination",
    "UNEXPECTED_TERMINATION": "unexpected_termination",
    "AUTOSCALER_DRAIN_PREEMPTED": "preempted",
    "AUTOSCALER_DRAIN_IDLE": "idle_terminated",
    "UNSPECIFIED": "unspecified",
}
# A node last seen alive that is gone from a complete node listing: its GCS restarted without
# persistence (a new session) or the dead-node cache evicted it before we saw it dead.
VANISHED = "vanished"


class _Remembered:
    """Ids already counted, oldest first, capped."""

    def __init__(self, cap: int = MAX_REMEMBERED_IDS):
        self._ids: OrderedDict[object, None] = OrderedDict()
        self._cap = cap

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def add(self, key: object) -> None:
        self._ids[key] = None
        while len(self._ids) > self._cap:
            self._ids.popitem(last=False)

    def keep_only(self, keys: Iterable[object], session: str) -> None:
        """Forget this session's ids Ray no longer lists, and every other session's."""
        present = set(keys)
        for key in list(self._ids):
            if not (isinstance(key, tuple) and key[0] == session and key in present):
                del self._ids[key]


class LifecycleCounters:
    """Feed every new snapshot to ``observe``; read the counters' current values any time.

    Each counter is a ``Counter`` keyed by a label tuple, e.g. ``jobs_finished[(session, status)]``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._observed: tuple[float, int] | None = None
        # When each source's answer was asked for, as last observed: an unchanged answer is skipped.
        self._answers: dict[str, float | None] = {}
        self._baselined: set[str] = set()
        self.jobs_finished: Counter[tuple[str, str]] = Counter()
        self.node_joins: Counter[tuple[str, str, str]] = Counter()
        self.node_removals: Counter[tuple[str, str, str, str]] = Counter()
        self.task_failures: Counter[tuple[str, str]] = Counter()
        self.actor_failures: Counter[tuple[str, str]] = Counter()
        self._finished_jobs = _Remembered()
        self._failed_tasks = _Remembered()
        self._failed_actors = _Remembered()
        # node key -> (node_type, market, alive) as last seen
        self._nodes: dict[tuple[str, str], tuple[str, str, bool]] = {}

    def snapshot(self) -> dict[str, dict[tuple[str, ...], float]]:
        """A consistent copy of every counter, for one exposition."""
        with self._lock:
            return {
                "jobs_finished": dict(self.jobs_finished),
                "node_joins": dict(self.node_joins),
                "node_removals": dict(self.node_removals),
                "task_failures": dict(self.task_failures),
                "actor_failures": dict(self.actor_failures),
            }

    def observe(self, snapshot: ClusterSnapshot) -> None:
        if not snapshot.session_name:
            # /api/version has not answered yet. Every key includes the session, so counting now
            # would see the whole cluster vanish and rejoin when it does: a phantom join per node.
            return
        with self._lock:
            if (snapshot.taken_at, snapshot.generation) == self._observed:
                return  # the same snapshot seen again
            self._observed = (snapshot.taken_at, snapshot.generation)
            session = snapshot.session_name
            if self._new_answer(snapshot, "jobs"):
                self._observe_jobs(snapshot, session, self._first("jobs"))
            if self._new_answer(snapshot, "nodes"):
                self._observe_nodes(snapshot, session, self._first("nodes"))
            if self._new_answer(snapshot, "tasks"):
                self._observe_tasks(snapshot, session, self._first("tasks"))
            if self._new_answer(snapshot, "actors"):
                self._observe_actors(snapshot, session, self._first("actors"))

    def _new_answer(self, snapshot: ClusterSnapshot, source: str) -> bool:
        """The source answered, and with an answer not observed yet (snapshots are recomposed after
        every source's answer, so most carry the same tasks as the one before)."""
        if not snapshot.ok(source):
            return False
        fetched = snapshot.fetched_at.get(source)
        if fetched is not None and self._answers.get(source) == fetched:
            return False
        self._answers[source] = fetched
        return True

    def _first(self, source: str) -> bool:
        first = source not in self._baselined
        self._baselined.add(source)
        return first

    def _observe_jobs(self, snapshot: ClusterSnapshot, session: str, baseline: bool) -> None:
        keys = []
        for job in snapshot.jobs:
            key = (session, job.key)
            keys.append(key)
            if job.finished and key not in self._finished_jobs:
                self._finished_jobs.add(key)
                if not baseline:
                    self.jobs_finished[(session, job.status)] += 1
        self._finished_jobs.keep_only(keys, session)

    def _observe_nodes(self, snapshot: ClusterSnapshot, session: str, baseline: bool) -> None:
        listed = set()
        for node in snapshot.nodes:
            key = (session, node.node_id)
            listed.add(key)
            previous = self._nodes.get(key)
            if previous is None and not baseline:
                self.node_joins[(session, node.node_type, node.market)] += 1
            was_alive = previous[2] if previous is not None else not baseline
            if was_alive and not node.alive:
                reason = NODE_REMOVAL_REASONS.get(node.death_reason, "unspecified")
                self.node_removals[(session, node.node_type, node.market, reason)] += 1
            self._nodes[key] = (node.node_type, node.market, node.alive)
        complete = snapshot.sources["nodes"].truncated == 0
        for key in [key for key in self._nodes if key not in listed]:
            node_type, market, alive = self._nodes[key]
            if not complete and key[0] == session:
                continue
            if alive:
                self.node_removals[(key[0], node_type, market, VANISHED)] += 1
            del self._nodes[key]

    def _observe_tasks(self, snapshot: ClusterSnapshot, session: str, baseline: bool) -> None:
        keys = []
        for task in snapshot.tasks:
            if task.state != "FAILED":
                continue
            key = (session, task.task_id, task.attempt_number)
            keys.append(key)
            if key not in self._failed_tasks:
                self._failed_tasks.add(key)
                if not baseline:
                    self.task_failures[(session, task.error_type or "UNKNOWN")] += 1
        if snapshot.sources["tasks"].truncated == 0:
            self._failed_tasks.keep_only(keys, session)

    def _observe_actors(self, snapshot: ClusterSnapshot, session: str, baseline: bool) -> None:
        keys = []
        for actor in snapshot.actors:
            if not actor.failed:
                continue
            key = (session, actor.actor_id)
            keys.append(key)
            if key not in self._failed_actors:
                self._failed_actors.add(key)
                if not baseline:
                    self.actor_failures[(session, actor.death_reason or "UNSPECIFIED")] += 1
        if snapshot.sources["actors"].truncated == 0:
            self._failed_actors.keep_only(keys, session)


def label_values(counts: Mapping[tuple[str, ...], float]) -> list[tuple[list[str], float]]:
    return [(list(key), value) for key, value in sorted(counts.items())]
