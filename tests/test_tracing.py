"""`raylens.tracing:setup` as Ray's tracing startup hook: spans of a real Ray task and a real Serve
request reach an OTLP receiver built here from OpenTelemetry's own protobuf definitions
(opentelemetry-proto), with parent/child links across processes. No part of Ray is mocked."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from raylens.stack.ports import free_port
from raylens.stack.ray_head import RayHead, short_temp_dir
from raylens.tracing import TracingSetupError, otlp_protocol, serve_span_processors
from services import REPO

WORKLOAD = REPO / "tests" / "ray_workloads" / "traced.py"


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    pid: int
    service: str


@dataclass
class OtlpReceiver:
    """OTLP/HTTP (protobuf) trace receiver: POST /v1/traces, as the OpenTelemetry spec defines it."""

    url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_name(self, suffix: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.name.endswith(suffix)]

    def parent_of(self, span: ReceivedSpan) -> ReceivedSpan | None:
        with self.lock:
            return next(
                (s for s in self.spans if s.trace_id == span.trace_id and s.span_id == span.parent_span_id), None
            )


@contextmanager
def running_otlp_receiver() -> Iterator[OtlpReceiver]:
    port = free_port()
    receiver = OtlpReceiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_error(404 if self.path != "/v1/traces" else 415)
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received = []
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value for a in resource_spans.resource.attributes}
                pid = attributes["process.pid"].int_value if "process.pid" in attributes else 0
                service = attributes["service.name"].string_value if "service.name" in attributes else ""
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        received.append(
                            ReceivedSpan(
                                span.name,
                                span.trace_id.hex(),
                                span.span_id.hex(),
                                span.parent_span_id.hex(),
                                pid,
                                service,
                            )
                        )
            with receiver.lock:
                receiver.spans.extend(received)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


class TracedRayHead(RayHead):
    """A test head whose processes run raylens.tracing:setup and export to ``otlp_endpoint``."""

    otlp_endpoint: str = ""

    def argv(self) -> list[str]:
        return [*super().argv(), "--tracing-startup-hook=raylens.tracing:setup"]

    def environment(self) -> dict[str, str]:
        return super().environment() | {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint,
            "OTEL_SERVICE_NAME": "ray-tracing-test",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            # Serve's proxy reads only these (Ray 2.60 passes no TracingConfig to proxies).
            "RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH": "raylens.tracing:serve_span_processors",
            "RAY_SERVE_TRACING_SAMPLING_RATIO": "1",
        }


def test_protocol_comes_from_the_standard_variables() -> None:
    assert otlp_protocol({}) == "http/protobuf"
    assert otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == "grpc"
    traces_only = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert otlp_protocol(traces_only) == "http/protobuf"
    with pytest.raises(TracingSetupError, match="expected one of"):
        otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    processors = serve_span_processors()
    assert len(processors) == 1 and type(processors[0]).__name__ == "BatchSpanProcessor"
    processors[0].shutdown()


@pytest.mark.slow
def test_ray_task_and_serve_request_spans_reach_an_otlp_receiver(tmp_path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    with running_otlp_receiver() as receiver:
        head = TracedRayHead(temp_dir=short_temp_dir(), log_dir=tmp_path)
        head.otlp_endpoint = receiver.url
        try:
            head.start()
            client = JobSubmissionClient(head.dashboard_url)
            job = client.submit_job(entrypoint=f"{sys.executable} {WORKLOAD} --serve-port={free_port()}")
            deadline = time.monotonic() + 240
            while not client.get_job_status(job).is_terminal():
                assert time.monotonic() < deadline, client.get_job_logs(job)[-3000:]
                time.sleep(1)
            assert client.get_job_status(job) == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]

            # Ray core: the worker's execution span is a child of the driver's submission span.
            deadline = time.monotonic() + 60
            while not receiver.by_name("traced_square ray.remote_worker") and time.monotonic() < deadline:
                time.sleep(0.5)
            executions = receiver.by_name("traced_square ray.remote_worker")
            assert executions, sorted({span.name for span in receiver.spans})
            submission = receiver.parent_of(executions[0])
            assert submission is not None and submission.name.endswith("traced_square ray.remote")
            assert submission.pid != executions[0].pid  # driver and worker: two processes
            assert executions[0].service == "ray-tracing-test"

            # Serve: the replica's span hangs, through the router, under the proxy's request span.
            replica = receiver.by_name("TracedHello __call__")
            replica = [span for span in replica if span.name.startswith("replica_handle_request")]
            assert replica, sorted({span.name for span in receiver.spans})
            chain = [replica[0]]
            while (parent := receiver.parent_of(chain[-1])) is not None:
                chain.append(parent)
            names = [span.name.split()[0] for span in chain]
            print("serve span chain:", " <- ".join(names))
            assert names[:3] == ["replica_handle_request", "route_to_replica", "proxy_http_request"], names
            assert chain[0].pid != chain[2].pid  # replica and proxy: two processes
            assert len({span.trace_id for span in chain}) == 1
            # With the core hook on too, Ray's actor tracing leaves the proxy actor's creation span
            # current in its event loop: requests hang under `ProxyActor.__init__` (docs/tracing.md).
            assert chain[-1].parent_span_id == ""
        finally:
            head.stop()
            shutil.rmtree(head.temp_dir, ignore_errors=True)
