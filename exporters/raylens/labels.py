"""The one policy for values from outside raylens that become label values.

Job metadata, Ray names and ids, node labels and GPU process titles are typed by users, so they can
be anything: 10 kB strings, newlines, quotes, emoji, lone surrogates. Every such value passes
``label_value`` where it enters raylens (the Ray snapshot parsers, cost attribution, the restored cost
state, GPU process attribution), so every exporter series holds at most ``LABEL_VALUE_MAX`` characters
and only valid UTF-8:

* a value longer than the cap keeps its first 119 characters, then ``…``, then 8 hex digits of the
  SHA-256 of the whole value: 128 characters in all. The digest keeps two long values that share a
  prefix apart, so they never collapse into one series (or one project's cost) by accident, and the
  same value is always cut the same way, across scrapes and exporter restarts;
* the entrypoint, which only describes a job (its id identifies it), is cut to
  ``ray.entrypoint_max_length`` and ends in ``…`` alone;
* lone surrogates (which no UTF-8 encoder accepts, and which would fail the whole scrape) become
  U+FFFD. Quotes, backslashes and newlines are left to the exposition's escaping.

``raylens_label_values_truncated_total{origin}`` counts the distinct values cut, per origin; a value
seen again is not counted again (the last 10,000 cut values are remembered).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector as PrometheusCollector

LABEL_VALUE_MAX = 128
MARKER = "…"
_DIGEST_CHARACTERS = 8
# Below this a digest would leave too little of the value to read; such caps cut without one.
_SHORTEST_WITH_DIGEST = 2 * (_DIGEST_CHARACTERS + 1)
_REMEMBERED_MAX = 10_000

# Where a value came from: the ``origin`` label of the counter (every one is exported from the start).
RAY_JOB_METADATA = "ray_job_metadata"
RAY_JOB_ID = "ray_job_id"
RAY_ENTRYPOINT = "ray_entrypoint"
RAY_SESSION_NAME = "ray_session_name"
RAY_NODE = "ray_node"
RAY_ACTOR_CLASS = "ray_actor_class"
RAY_TASK_NAME = "ray_task_name"
COST_ATTRIBUTION = "cost_attribution"
COST_STATE = "cost_state"
GPU_PROCESS = "gpu_process"
ORIGINS = (
    RAY_JOB_METADATA,
    RAY_JOB_ID,
    RAY_ENTRYPOINT,
    RAY_SESSION_NAME,
    RAY_NODE,
    RAY_ACTOR_CLASS,
    RAY_TASK_NAME,
    COST_ATTRIBUTION,
    COST_STATE,
    GPU_PROCESS,
)


class TruncationCounter:
    """Distinct values cut, per origin; thread-safe (collectors run on scrape threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(ORIGINS, 0)
        self._seen: set[tuple[str, str]] = set()

    def record(self, origin: str, digest: str) -> None:
        with self._lock:
            key = (origin, digest)
            if key in self._seen:
                return
            if len(self._seen) >= _REMEMBERED_MAX:
                self._seen.clear()
            self._seen.add(key)
            self._counts[origin] = self._counts.get(origin, 0) + 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


TRUNCATED = TruncationCounter()


def label_value(value: object, origin: str, limit: int = LABEL_VALUE_MAX, digest: bool = True) -> str:
    """``value`` as a label value under the policy above; counts the cut in ``TRUNCATED``.

    ``digest=False`` ends a cut value with the marker alone: for text that only describes (a job's
    entrypoint, next to the job id that identifies it), where reading more of it matters more.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit and text.isascii():
        return text  # the common case, a few hundred nanoseconds
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if len(text) <= limit:
        return text
    hexdigest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:_DIGEST_CHARACTERS]
    TRUNCATED.record(origin, hexdigest)
    if not digest or limit < _SHORTEST_WITH_DIGEST:
        return text[: max(0, limit - 1)] + MARKER
    return text[: limit - 1 - _DIGEST_CHARACTERS] + MARKER + hexdigest


class LabelPolicyCollector(PrometheusCollector):
    """Exposes ``TRUNCATED``. Sample::

    raylens_label_values_truncated_total{origin="ray_job_metadata"} 3.0
    """

    def __init__(self, counter: TruncationCounter = TRUNCATED):
        self._counter = counter

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "raylens_label_values_truncated",
            f"Distinct outside values (job metadata, Ray names and ids, node labels, GPU process titles) cut "
            f"to {LABEL_VALUE_MAX} characters ending in {MARKER} and a digest, by origin.",
            labels=["origin"],
        )
        for origin, count in sorted(self._counter.counts().items()):
            family.add_metric([origin], float(count))
        yield family
