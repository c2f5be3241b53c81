"""The cloud's instance-metadata service: instance type, market and region of *this* machine.

Only the node the exporter runs on can be described this way, so the answer applies to the Ray node
whose IP is one of this host's addresses. Off by default (``cost.instance_metadata``); every request has
a short timeout and any failure means "no answer", never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests

log = logging.getLogger("raylens.cost")

AWS_BASE_URL = "http://169.254.169.254"
GCP_BASE_URL = "http://metadata.google.internal"


@dataclass(frozen=True)
class InstanceIdentity:
    cloud: str
    instance_type: str
    market: str  # on_demand | spot | ""
    region: str


def _aws(base: str, timeout: float) -> InstanceIdentity | None:
    token = requests.put(
        f"{base}/latest/api/token",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        timeout=timeout,
    )
    if token.status_code != 200:
        return None
    headers = {"X-aws-ec2-metadata-token": token.text}

    def get(path: str) -> str:
        response = requests.get(f"{base}/latest/meta-data/{path}", headers=headers, timeout=timeout)
        return response.text.strip() if response.status_code == 200 else ""

    instance_type = get("instance-type")
    if not instance_type:
        return None
    life_cycle = get("instance-life-cycle")  # "spot" or "on-demand"
    market = "spot" if life_cycle == "spot" else "on_demand" if life_cycle == "on-demand" else ""
    return InstanceIdentity("aws", instance_type, market, get("placement/region"))


def _gcp(base: str, timeout: float) -> InstanceIdentity | None:
    headers = {"Metadata-Flavor": "Google"}

    def get(path: str) -> str:
        response = requests.get(f"{base}/computeMetadata/v1/instance/{path}", headers=headers, timeout=timeout)
        return response.text.strip() if response.status_code == 200 else ""

    machine_type = get("machine-type").rsplit("/", 1)[-1]  # projects/123/machineTypes/n2-standard-8
    if not machine_type:
        return None
    model = get("scheduling/provisioning-model").upper()  # SPOT or STANDARD
    preemptible = get("scheduling/preemptible").upper() == "TRUE"
    market = "spot" if model == "SPOT" or preemptible else "on_demand"
    zone = get("zone").rsplit("/", 1)[-1]  # projects/123/zones/us-central1-a
    region = zone.rsplit("-", 1)[0] if zone.count("-") >= 2 else ""
    return InstanceIdentity("gcp", machine_type, market, region)


def query_instance_metadata(
    timeout: float, aws_base: str = AWS_BASE_URL, gcp_base: str = GCP_BASE_URL
) -> InstanceIdentity | None:
    """AWS (IMDSv2) first, then GCP; None when neither answers within ``timeout`` per request."""
    for name, probe, base in (("aws", _aws, aws_base), ("gcp", _gcp, gcp_base)):
        try:
            identity = probe(base, timeout)
        except requests.RequestException as error:
            log.debug("instance metadata unavailable", extra={"cloud": name, "error": str(error)})
            continue
        if identity is not None:
            return identity
    return None


def local_addresses() -> set[str]:
    """This host's IP addresses, to find which Ray node the metadata describes."""
    import psutil

    addresses = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            addresses.add(entry.address.split("%", 1)[0])
    return addresses
