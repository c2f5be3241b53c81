"""Ray access for raylens: locate a cluster, read its state in one bounded round, describe it.

* ``raylens.ray.snapshot`` — the immutable ``ClusterSnapshot`` model every consumer reads.
* ``raylens.ray.from_api`` — the dashboard's JSON rows → snapshot records.
* ``raylens.ray.state`` — ``RayStateSource``, the only code that calls Ray.
* ``raylens.ray.address`` — ``auto`` / GCS address / dashboard URL → dashboard URL.
* ``raylens.ray.lifecycle`` — counters of job, node, task and actor events across snapshots.
* ``raylens.ray.source_metrics``, ``node_metrics``, ``job_metrics``, ``workload_metrics`` — the ray
  collector's metric families.
* ``raylens.ray.discovery`` — Prometheus file_sd target lists (``raylens sd``).

Nothing here imports ``ray`` at module level: the core exporter runs on machines without Ray.
"""
