"""How each job's cost came about: the segments ``raylens cost explain`` prints, kept by the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from raylens.cost.holdings import JobKey
from raylens.cost.model import NodeSpan
from raylens.cost.pricing import NodePrice


@dataclass
class ExplainLog:
    """How each job's cost came about, as coalesced segments per node, and each node's pricing.

    Segment: [start, end, cpu share, gpu share, memory share, dollars]; consecutive intervals with the
    same shares merge, and only the last ``MAX_SEGMENTS`` per (job, node) are kept.
    """

    MAX_SEGMENTS = 50
    jobs: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    nodes: dict[str, tuple[NodePrice, NodeSpan | None]] = field(default_factory=dict)
    # Set by the engine: writes segments it extends lazily (raylens.cost.steady) before a read.
    settle: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def record(
        self,
        key: JobKey,
        node_id: str,
        start: float,
        end: float,
        cpu: float,
        gpu: float,
        memory: float,
        dollars: float,
    ) -> list[list[float]]:
        """Add a segment (or extend the last one); returns the segments of ``key`` on the node."""
        job_id, application, deployment = key
        where = node_id if not application else f"{node_id} serve {application}/{deployment}"
        by_node = self.jobs.get(job_id)
        if by_node is None:
            by_node = self.jobs[job_id] = {}
        segments = by_node.get(where)
        if segments is None:
            segments = by_node[where] = [[start, end, cpu, gpu, memory, dollars]]
            return segments
        last = segments[-1]
        if (
            -1e-6 < last[1] - start < 1e-6
            and -1e-9 < last[2] - cpu < 1e-9
            and -1e-9 < last[3] - gpu < 1e-9
            and -1e-9 < last[4] - memory < 1e-9
        ):
            last[1] = end
            last[5] += dollars
            return segments
        segments.append([start, end, cpu, gpu, memory, dollars])
        if len(segments) > self.MAX_SEGMENTS:
            del segments[0]
        return segments

    def to_json(self, copy: bool = False) -> dict[str, object]:
        """JSON-ready data; ``copy`` makes it independent of later changes (for a background write)."""
        if self.settle is not None:
            self.settle()
        jobs = self.jobs
        if copy:
            jobs = {
                job_id: {where: [segment[:] for segment in segments] for where, segments in by_node.items()}
                for job_id, by_node in jobs.items()
            }
        return {
            "jobs": jobs,
            "nodes": {
                node_id: {
                    "price": price.to_dict(),
                    "start": span.start_time if span else None,
                    "end": span.end_time if span else None,
                    "ip": span.ip if span else "",
                    "is_head": bool(span and span.is_head),
                    "labels": dict(span.labels) if span else {},
                    "capacity": [span.capacity.cpu, span.capacity.gpu, span.capacity.memory_bytes] if span else [],
                }
                for node_id, (price, span) in self.nodes.items()
            },
        }
