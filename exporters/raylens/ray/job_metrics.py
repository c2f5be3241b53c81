"""Per-job series of the ray collector: the job table with its metadata, status and run time.

Finished jobs stay visible for ``ray.finished_grace_seconds`` after they end, then leave the
exposition (their counts in ``raylens_ray_jobs_finished_total`` stay). Sample::

    raylens_ray_job_info{SessionName="session_…",entrypoint="python train.py",job_id="02000000",
        project="vision",submission_id="raysubmit_x",team="ml",type="SUBMISSION",user="alice",workload=""} 1.0
    raylens_ray_job_duration_seconds{SessionName="session_…",job_id="02000000",submission_id="raysubmit_x"} 310.0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from raylens.labels import RAY_ENTRYPOINT, RAY_JOB_METADATA, label_value
from raylens.ray.snapshot import ClusterSnapshot, JobSnapshot

JOB_LABELS = ["SessionName", "job_id", "submission_id"]


def job_labels(session: str, job: JobSnapshot) -> list[str]:
    return [session, job.job_id or "", job.submission_id or ""]


def visible_jobs(snapshot: ClusterSnapshot, now: float, grace_seconds: float) -> Iterator[JobSnapshot]:
    """Jobs not finished, and finished ones for ``grace_seconds`` after they ended."""
    for job in snapshot.jobs:
        if not job.finished or job.end_time is None or now - job.end_time <= grace_seconds:
            yield job


def hidden_job_ids(snapshot: ClusterSnapshot, now: float, grace_seconds: float) -> set[str]:
    """Ids of jobs past their grace period: their per-job series leave the exposition with them."""
    visible = {job.job_id for job in visible_jobs(snapshot, now, grace_seconds)}
    return {job.job_id for job in snapshot.jobs if job.job_id and job.job_id not in visible}


def job_families(
    snapshot: ClusterSnapshot,
    now: float,
    grace_seconds: float,
    attribution_labels: Sequence[str],
    entrypoint_max_length: int,
) -> Iterator[Metric]:
    """Job counts by status, then per visible job its metadata (one label per attribution key),
    status, start, end and run time."""
    session = snapshot.session_name
    counts = GaugeMetricFamily(
        "raylens_ray_jobs", "Jobs in Ray's job table by status.", labels=["SessionName", "status"]
    )
    for status, count in sorted(Counter(job.status for job in snapshot.jobs).items()):
        counts.add_metric([session, status], count)
    yield counts

    attribution = list(attribution_labels)
    info = GaugeMetricFamily(
        "raylens_ray_job_info",
        "Each live or recently finished job with its metadata, value 1. Join on job_id for attribution.",
        labels=[*JOB_LABELS, "type", "entrypoint", *attribution],
    )
    status = GaugeMetricFamily(
        "raylens_ray_job_status", "1 for the job's current status.", labels=[*JOB_LABELS, "status"]
    )
    started = GaugeMetricFamily(
        "raylens_ray_job_start_time_seconds", "When the job started, Unix time.", labels=JOB_LABELS
    )
    ended = GaugeMetricFamily(
        "raylens_ray_job_end_time_seconds", "When the job finished, Unix time.", labels=JOB_LABELS
    )
    duration = GaugeMetricFamily(
        "raylens_ray_job_duration_seconds",
        "Run time so far, or start to end once finished.",
        labels=JOB_LABELS,
    )
    for job in visible_jobs(snapshot, now, grace_seconds):
        labels = job_labels(session, job)
        entrypoint = label_value(job.entrypoint, RAY_ENTRYPOINT, entrypoint_max_length, digest=False)
        metadata = [label_value(job.metadata.get(key, ""), RAY_JOB_METADATA) for key in attribution]
        info.add_metric([*labels, job.type, entrypoint, *metadata], 1.0)
        status.add_metric([*labels, job.status], 1.0)
        if job.start_time is not None:
            started.add_metric(labels, job.start_time)
            duration.add_metric(labels, job.duration(now) or 0.0)
        if job.end_time is not None:
            ended.add_metric(labels, job.end_time)
    yield from (info, status, started, ended, duration)
