"""One Ray task and one Ray Serve request, for the tracing test (tracing comes from the cluster's hook)."""

import argparse
import time

import ray
import requests
from ray import serve

parser = argparse.ArgumentParser()
parser.add_argument("--serve-port", type=int, required=True)
args = parser.parse_args()

ray.init(address="auto")


@ray.remote
def traced_square(x: int) -> int:
    return x * x


assert ray.get(traced_square.remote(7)) == 49


@serve.deployment
class TracedHello:
    def __call__(self, request) -> str:
        return "hello"


serve.start(
    http_options={"host": "127.0.0.1", "port": args.serve_port},
    tracing_config={
        "enabled": True,
        "exporter_import_path": "raylens.tracing:serve_span_processors",
        "sampling_ratio": 1.0,
    },
)
serve.run(TracedHello.bind(), name="traced", route_prefix="/traced")
response = requests.get(f"http://127.0.0.1:{args.serve_port}/traced", timeout=60)
assert response.text == "hello", response.text
print("request served", flush=True)
time.sleep(3)  # batch processors export every OTEL_BSP_SCHEDULE_DELAY ms
serve.shutdown()
