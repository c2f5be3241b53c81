"""Command-line flags for the Prometheus that ``raylens report`` and ``raylens recommend`` read.

Each flag overrides the ``prometheus`` section of raylens.yaml (``RAYLENS_PROMETHEUS_URL`` overrides
the file's URL). With no URL anywhere, a stack started by ``raylens up`` is found through its state
file, else ``http://127.0.0.1:9090``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from raylens.config import RaylensConfig, load_config

FLAGS: dict[str, tuple[tuple[str, ...], str, Any]] = {
    # dest: (field path, help, type)
    "prometheus_url": (
        ("prometheus", "url"),
        "Prometheus-API base URL (default: raylens.yaml, else a running "
        "`raylens up` stack, else http://127.0.0.1:9090)",
        str,
    ),
    "prometheus_username": (("prometheus", "basic_auth", "username"), "basic auth user name", str),
    "prometheus_password_file": (
        ("prometheus", "basic_auth", "password_file"),
        "file holding the basic auth password",
        Path,
    ),
    "prometheus_bearer_token_file": (("prometheus", "bearer_token_file"), "file holding a bearer token", Path),
    "prometheus_ca_file": (("prometheus", "tls_config", "ca_file"), "CA bundle for https URLs", Path),
    "prometheus_cert_file": (("prometheus", "tls_config", "cert_file"), "client certificate (mutual TLS)", Path),
    "prometheus_key_file": (("prometheus", "tls_config", "key_file"), "client key (mutual TLS)", Path),
    "prometheus_server_name": (("prometheus", "tls_config", "server_name"), "server name to verify", str),
}
FLAG_NAMES = {
    "prometheus_url": "--prometheus.url",
    "prometheus_username": "--prometheus.basic-auth.username",
    "prometheus_password_file": "--prometheus.basic-auth.password-file",
    "prometheus_bearer_token_file": "--prometheus.bearer-token-file",
    "prometheus_ca_file": "--prometheus.tls.ca-file",
    "prometheus_cert_file": "--prometheus.tls.cert-file",
    "prometheus_key_file": "--prometheus.tls.key-file",
    "prometheus_server_name": "--prometheus.tls.server-name",
}


def add_prometheus_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        default=os.environ.get("RAYLENS_CONFIG_FILE") or None,
        help="raylens.yaml (prometheus, reports, recommendations, cost sections)",
    )
    group = parser.add_argument_group("Prometheus connection (overrides raylens.yaml's prometheus section)")
    for dest, (_path, text, kind) in FLAGS.items():
        group.add_argument(FLAG_NAMES[dest], dest=dest, type=kind, help=text)
    group.add_argument(
        "--prometheus.tls.insecure-skip-verify",
        dest="prometheus_insecure",
        action="store_true",
        default=None,
        help="do not verify the server certificate (testing only)",
    )


def load_with_prometheus_flags(args: argparse.Namespace) -> RaylensConfig:
    overrides: dict[tuple[str, ...], tuple[str, Any]] = {}
    for dest, (path, _text, _kind) in FLAGS.items():
        overrides[path] = (f"flag {FLAG_NAMES[dest]}", getattr(args, dest, None))
    overrides[("prometheus", "tls_config", "insecure_skip_verify")] = (
        "flag --prometheus.tls.insecure-skip-verify",
        getattr(args, "prometheus_insecure", None),
    )
    config = load_config(args.config_file, overrides=overrides)
    if "url" not in config.prometheus.model_fields_set:
        stack_url = running_stack_prometheus()
        if stack_url:
            config = config.model_copy(update={"prometheus": config.prometheus.model_copy(update={"url": stack_url})})
    return config


def running_stack_prometheus() -> str | None:
    """The Prometheus URL of a stack ``raylens up`` started (its state file), if one is running."""
    from raylens.stack.processes import pid_alive
    from raylens.stack.up import default_state_dir, read_state

    try:
        state = read_state(default_state_dir())
    except (OSError, ValueError):
        return None
    if not state:
        return None
    component = next((item for item in state.get("components", []) if item.get("name") == "prometheus"), None)
    if component is None or not pid_alive(component.get("pid", 0)):
        return None
    return state.get("urls", {}).get("prometheus")
