"""The ``cluster`` section: the name every series carries, so one Prometheus holds many clusters."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from raylens.config.base import _Section

# What a Prometheus label value may hold is anything; what a cluster name should hold is what
# KubeRay's RayCluster names (DNS-1123) and Ray's session names (session_2026-…_1234) are made of.
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,126}$")


class ClusterConfig(_Section):
    """Which cluster this exporter or ``raylens sd`` belongs to (docs/deploy.md, "Many clusters")."""

    name: str | None = Field(
        None,
        description="Value of the `cluster` label on every series the exporter emits and on every target "
        "`raylens sd` writes. Unset: KubeRay's RayCluster name (RAY_CLUSTER_NAME, which KubeRay sets from "
        "the pod's ray.io/cluster label), else the Ray session of this machine (<ray.temp_dir>/session_latest), "
        "else, for the ray and cost collectors, the session the dashboard reports. Set it: a session name "
        "changes at every cluster restart.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _CLUSTER_NAME.match(value):
            raise ValueError(
                "expected 1-127 letters, digits, '_', '.', ':' or '-', starting with a letter or digit, "
                "e.g. 'prod-us-east'"
            )
        return value
