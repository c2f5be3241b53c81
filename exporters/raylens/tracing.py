"""OpenTelemetry tracing for Ray and Ray Serve, configured from the standard ``OTEL_*`` variables.

Ray core (tasks and actor calls)::

    ray start --head --tracing-startup-hook=raylens.tracing:setup      # every node, every process
    ray.init(_tracing_startup_hook="raylens.tracing:setup")             # or from the first driver

Ray stores the hook in its GCS and runs it in every driver and worker as it connects; each task
submission then gets a ``<function> ray.remote`` span and its execution a child
``<function> ray.remote_worker`` span in the worker, linked through the propagated context.

Ray Serve (HTTP requests through the proxy, router and replica)::

    serve.start(tracing_config={"enabled": True, "exporter_import_path": "raylens.tracing:serve_span_processors"})

Where spans go, read by OpenTelemetry's own exporters from the processes' environment (set it on
``ray start``; workers inherit it):

=====================================  =========================================================
``OTEL_EXPORTER_OTLP_ENDPOINT``         collector, Tempo or Jaeger OTLP endpoint (default
                                        ``http://localhost:4318`` for HTTP, ``:4317`` for gRPC)
``OTEL_EXPORTER_OTLP_PROTOCOL``         ``http/protobuf`` (default, the spec's) or ``grpc``
``OTEL_EXPORTER_OTLP_TRACES_*``         the same, for traces only; ``…_HEADERS``, ``…_TIMEOUT``,
                                        ``…_COMPRESSION``, ``…_CERTIFICATE`` as the spec says
``OTEL_SERVICE_NAME``                   ``service.name`` (default ``ray``)
``OTEL_RESOURCE_ATTRIBUTES``            extra resource attributes (``deployment.environment=prod``)
``OTEL_TRACES_SAMPLER``/``…_ARG``       e.g. ``parentbased_traceidratio`` / ``0.05`` (default: all)
``OTEL_BSP_SCHEDULE_DELAY``             batch export interval in ms (default 5000)
=====================================  =========================================================

Needs ``pip install 'raylens[tracing]'`` on every node (the OTLP exporters; Ray already brings the
OpenTelemetry API and SDK).
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("raylens.tracing")

PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
DEFAULT_PROTOCOL = "http/protobuf"
DEFAULT_SERVICE_NAME = "ray"
_PROTOCOLS = ("http/protobuf", "grpc")


class TracingSetupError(RuntimeError):
    """The environment asks for something raylens cannot set up (bad protocol, missing exporter)."""


def otlp_protocol(environ: dict[str, str] | None = None) -> str:
    environ = dict(os.environ) if environ is None else environ
    for variable in PROTOCOL_VARIABLES:
        value = environ.get(variable, "").strip().lower()
        if value:
            if value not in _PROTOCOLS:
                raise TracingSetupError(f"{variable}={value!r}: expected one of {', '.join(_PROTOCOLS)}")
            return value
    return DEFAULT_PROTOCOL


def span_exporter(environ: dict[str, str] | None = None) -> Any:
    """OpenTelemetry's OTLP span exporter for the configured protocol; it reads its own variables."""
    protocol = otlp_protocol(environ)
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as error:
        raise TracingSetupError(
            f"OTLP over {protocol} needs pip install 'raylens[tracing]' on every node: {error}"
        ) from None
    return OTLPSpanExporter()


def resource(environ: dict[str, str] | None = None) -> Any:
    from opentelemetry.sdk.resources import Resource

    environ = dict(os.environ) if environ is None else environ
    attributes: dict[str, Any] = {"process.pid": os.getpid()}
    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:
        attributes["service.name"] = DEFAULT_SERVICE_NAME
    return Resource.create(attributes)


def span_processors() -> list[Any]:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return [BatchSpanProcessor(span_exporter())]


_installed_pid: int | None = None


def setup() -> None:
    """Ray's tracing startup hook: install a tracer provider exporting over OTLP in this process."""
    global _installed_pid
    if _installed_pid == os.getpid():
        return
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    # The sampler comes from OTEL_TRACES_SAMPLER (TracerProvider reads it); default: parent-based, all.
    provider = TracerProvider(resource=resource())
    for processor in span_processors():
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _installed_pid = os.getpid()


def serve_span_processors() -> list[Any]:
    """Ray Serve's ``exporter_import_path`` target (Serve requires a function of no arguments that
    returns span processors for its own provider).

    When ``setup`` already runs in this process (the core hook is on), Serve's spans go through that
    provider and nothing more is added (one export, not two).
    """
    if _installed_pid == os.getpid():
        return []
    return span_processors()
