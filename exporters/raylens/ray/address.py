"""Turning the configured Ray address (``auto``, a GCS address or a dashboard URL) into the URL of the
dashboard's HTTP server, which serves the State API, the Job API and Ray's own service discovery.

A dashboard URL needs nothing but HTTP. A GCS address (and ``auto``, which finds one) is resolved by
asking the GCS for the dashboard's address, the way ``ray job submit`` does; that needs the ``ray``
package, imported only here and only then. The GCS client blocks for up to ~40 s when the GCS is
down, so the lookup runs on a background thread and callers wait only as long as their deadline.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path

DEFAULT_TEMP_DIR = Path("/tmp/ray")
# ray_constants.DASHBOARD_ADDRESS / KV_NAMESPACE_DASHBOARD
DASHBOARD_ADDRESS_KEY = b"dashboard"
DASHBOARD_NAMESPACE = b"dashboard"


class RayUnavailable(RuntimeError):
    """Ray could not be reached or located; the message says what was tried."""


def import_ray_module(name: str):  # -> ModuleType
    """Import a part of the ``ray`` package without letting it restyle our logs.

    ``import ray`` installs a global log-record factory that adds ``_ray_timestamp_ns`` to every
    record, which would then appear in each raylens JSON log line.
    """
    factory = logging.getLogRecordFactory()
    try:
        return importlib.import_module(name)
    finally:
        logging.setLogRecordFactory(factory)


def is_dashboard_url(address: str) -> bool:
    return address.startswith(("http://", "https://"))


def find_local_gcs_address(temp_dir: Path | None, environ: Mapping[str, str] | None = None) -> str:
    """``auto``: ``RAY_ADDRESS`` when set, else the cluster ``ray start`` recorded on this machine."""
    environ = os.environ if environ is None else environ
    from_environment = (environ.get("RAY_ADDRESS") or "").strip()
    if from_environment and from_environment != "auto":
        return from_environment
    record = (temp_dir or DEFAULT_TEMP_DIR) / "ray_current_cluster"
    try:
        address = record.read_text().strip().splitlines()[0].strip()
    except (OSError, IndexError):
        raise RayUnavailable(
            f"address `auto`: RAY_ADDRESS is unset and {record} names no running cluster; "
            "set ray.address to the GCS address or the dashboard URL"
        ) from None
    if not address:
        raise RayUnavailable(f"address `auto`: {record} is empty")
    return address


def dashboard_url_from_gcs(gcs_address: str, timeout: float) -> str:
    """Ask the GCS where the dashboard listens (blocking; needs the ``ray`` package)."""
    try:
        GcsClient = import_ray_module("ray._raylet").GcsClient
    except ImportError as error:
        raise RayUnavailable(
            f"resolving GCS address {gcs_address} needs the ray package (pip install 'raylens[ray]'), "
            f"or set ray.address to the dashboard URL: {error}"
        ) from None
    host, _, port_text = gcs_address.rpartition(":")
    try:
        # Ray's client retries a closed port for ~40 s; a plain connect tells "down" at once.
        socket.create_connection((host.strip("[]"), int(port_text)), timeout=min(2.0, timeout)).close()
    except (OSError, ValueError) as error:
        raise RayUnavailable(f"GCS at {gcs_address} refuses connections: {error}") from None
    try:
        client = GcsClient(address=gcs_address)
        value = client.internal_kv_get(DASHBOARD_ADDRESS_KEY, namespace=DASHBOARD_NAMESPACE, timeout=timeout)
    except Exception as error:  # ray raises RpcError, ConnectionError, TimeoutError…
        raise RayUnavailable(f"GCS at {gcs_address} did not answer: {type(error).__name__}: {error}") from None
    if not value:
        raise RayUnavailable(f"GCS at {gcs_address} knows no dashboard (started with --include-dashboard=false?)")
    host, _, port = value.decode().rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        # The dashboard listens on every interface: reach it where the GCS is.
        host = gcs_address.rpartition(":")[0]
    return f"http://{host}:{port}"


class DashboardLocator:
    """Resolves the configured address to a dashboard URL, once, and again after ``forget()``.

    ``url(deadline_seconds)`` returns the URL or raises ``RayUnavailable``; a slow GCS lookup keeps
    running in the background and the next call picks up its result.
    """

    def __init__(
        self,
        address: str,
        temp_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
        lookup_timeout: float = 10.0,
    ):
        self._address = address
        self._temp_dir = temp_dir
        self._environ = environ
        self._lookup_timeout = lookup_timeout
        self._lock = threading.Lock()
        self._resolved: str | None = address if is_dashboard_url(address) else None
        self._pending: Future[str] | None = None

    @property
    def fixed(self) -> bool:
        return is_dashboard_url(self._address)

    def forget(self) -> None:
        """The dashboard stopped answering: look it up again next time (it may have moved)."""
        if not self.fixed:
            with self._lock:
                self._resolved = None

    def url(self, deadline_seconds: float) -> str:
        with self._lock:
            if self._resolved is not None:
                return self._resolved
            if self._pending is None:
                self._pending = self._start_lookup()
            pending = self._pending
        try:
            url = pending.result(timeout=max(0.0, deadline_seconds))
        except TimeoutError:
            raise RayUnavailable(
                f"still looking up the dashboard of {self._address} after {deadline_seconds:.1f}s"
            ) from None
        except RayUnavailable:
            with self._lock:
                if self._pending is pending:
                    self._pending = None
            raise
        with self._lock:
            self._resolved = url
            if self._pending is pending:
                self._pending = None
        return url

    def _start_lookup(self) -> Future[str]:
        future: Future[str] = Future()
        address = self._address

        def lookup() -> None:
            try:
                gcs = find_local_gcs_address(self._temp_dir, self._environ) if address == "auto" else address
                if is_dashboard_url(gcs):
                    future.set_result(gcs.rstrip("/"))
                    return
                future.set_result(dashboard_url_from_gcs(gcs, self._lookup_timeout))
            except RayUnavailable as error:
                future.set_exception(error)
            except Exception as error:  # never leave the future unresolved
                future.set_exception(RayUnavailable(f"{type(error).__name__}: {error}"))

        threading.Thread(target=lookup, name="ray-dashboard-lookup", daemon=True).start()
        return future
