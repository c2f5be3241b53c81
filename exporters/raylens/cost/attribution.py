"""Who a job's cost belongs to: user, project, team from job metadata; workload type from metadata or
inferred from what the job runs (and the label says which).

Missing metadata reads ``__unallocated__`` and cost nobody holds reads ``__idle__`` (Kubecost's
conventions), so ``sum by (project)`` shows both as rows of their own and still adds up to the total.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from raylens.config import CostConfig
from raylens.labels import COST_ATTRIBUTION, label_value

UNALLOCATED = "__unallocated__"
IDLE = "__idle__"
IDLE_KEY = (IDLE, IDLE, IDLE, IDLE)

SERVE_REPLICA_PREFIX = "ServeReplica:"
# Workload types in order of precedence when a job runs several kinds of work.
_INFERENCE = (
    ("serve", re.compile(r"^(ServeReplica:|ServeController$|ProxyActor$|ServeDeploymentScheduler)")),
    ("train", re.compile(r"RayTrainWorker|TrainController|TrainStateActor|TrainTrainable|_TrainSession")),
    (
        "data",
        re.compile(
            r"->|^(Read|Write)[A-Z]\w*|^(MapBatches|MapRows|Map|FlatMap|Filter|Project)\(|MapWorker|_map_task"
            r"|_StatsActor|SplitCoordinator|AutoscalingRequester|^ray\.data\."
        ),
    ),
)
DEFAULT_WORKLOAD = "tasks"


@dataclass(frozen=True)
class JobLabels:
    user: str
    project: str
    team: str


def _metadata_label(metadata: Mapping[str, str], key: str) -> str:
    # Metadata is user text and becomes labels and state keys: the label-value policy applies.
    value = metadata.get(key)
    return label_value(value, COST_ATTRIBUTION) if value else ""


def job_labels(metadata: Mapping[str, str], config: CostConfig) -> JobLabels:
    return JobLabels(
        _metadata_label(metadata, config.user_metadata_key) or UNALLOCATED,
        _metadata_label(metadata, config.project_metadata_key) or UNALLOCATED,
        _metadata_label(metadata, config.team_metadata_key) or UNALLOCATED,
    )


def job_workload(metadata: Mapping[str, str], config: CostConfig) -> str:
    """The workload type the job's metadata names, ``""`` when it names none."""
    return _metadata_label(metadata, config.workload_metadata_key)


class WorkloadClassifier:
    """Names of tasks and actors → workload type; cached, since the same names repeat."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def classify_name(self, name: str) -> str:
        found = self._cache.get(name)
        if found is None:
            found = next((kind for kind, pattern in _INFERENCE if pattern.search(name)), DEFAULT_WORKLOAD)
            if len(self._cache) < 100_000:
                self._cache[name] = found
        return found

    def classify(self, names: Iterable[str]) -> str:
        kinds = {self.classify_name(name) for name in names}
        for kind, _pattern in _INFERENCE:
            if kind in kinds:
                return kind
        return DEFAULT_WORKLOAD


def serve_deployment(name: str) -> tuple[str, str] | None:
    """(application, deployment) of a Serve replica actor (``ServeReplica:<app>:<deployment>``)."""
    if not name.startswith(SERVE_REPLICA_PREFIX):
        return None
    parts = name[len(SERVE_REPLICA_PREFIX) :].split(":", 1)
    if len(parts) != 2:
        return (parts[0], "")
    return (parts[0], parts[1])
