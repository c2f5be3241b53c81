"""Building blocks shared by every config section: the frozen model base, listen addresses, regexes."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

DEFAULT_PORT = 9965
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"

# node_exporter's default exclusions, so both exporters report the same devices and mounts.
DEFAULT_DISK_DEVICE_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue"
    r"|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)

KNOWN_COLLECTORS = ("node", "ray", "cost", "gpu", "recommend")
CollectorName = Literal["node", "ray", "cost", "gpu", "recommend"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"expected a valid regular expression ({error})") from None
    return value


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split ``host:port`` (host may be empty for all interfaces, or a bracketed IPv6 address)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("expected host:port with a port from 1 to 65535, e.g. ':9965' or '127.0.0.1:9965'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("expected an IPv6 host in brackets, e.g. '[::1]:9965'")
    return host, int(port_text)
