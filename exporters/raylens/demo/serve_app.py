"""Demo Ray Serve job: one application with two deployments, driven by a built-in request generator.

The app listens on 127.0.0.1 only. About 5 % of requests fail on purpose and latency has a long tail
(log-normal, median ~10 ms, p99 ~150 ms), so error-ratio and latency-quantile panels, the SLO burn
rules and error budgets move. ``--duration 0`` keeps the traffic going until the job is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import ray
import requests
from ray import serve
from starlette.requests import Request


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.1})
class Tokenizer:
    def tokenize(self, text: str) -> list[str]:
        return text.split()


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.1})
class Classifier:
    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    async def __call__(self, request: Request) -> dict:
        text = request.query_params.get("text", "")
        if random.random() < 0.05:
            raise RuntimeError("demo failure")
        tokens = await self.tokenizer.tokenize.remote(text)
        await asyncio.sleep(min(1.0, random.lognormvariate(-4.6, 0.9)))  # ~10 ms median, long tail
        return {"tokens": len(tokens), "label": "long" if len(tokens) > 3 else "short"}


# The same graph for config deploys (`serve deploy`, PUT /api/serve/applications/), which is what
# `raylens remediate`'s restart-serve-deployment can roll: import_path raylens.demo.serve_app:app
app = Classifier.bind(Tokenizer.bind())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="HTTP port for Serve's proxy (loopback)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of traffic; 0: until stopped")
    parser.add_argument("--rate", type=float, default=3.0, help="requests per second")
    args = parser.parse_args()
    ray.init()
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(app, name="classifier", route_prefix="/classify")
    url = f"http://127.0.0.1:{args.port}/classify"
    deadline = time.monotonic() + args.duration if args.duration > 0 else float("inf")
    sent = failed = 0
    session = requests.Session()
    while time.monotonic() < deadline:
        words = " ".join(random.choice(["ray", "cost", "gpu", "lens"]) for _ in range(random.randint(1, 6)))
        try:
            response = session.get(url, params={"text": words}, timeout=10)
            failed += response.status_code >= 500
        except requests.RequestException:
            failed += 1
        sent += 1
        if sent % 600 == 0:
            print(f"sent {sent} requests, {failed} failed", flush=True)
        time.sleep(1.0 / args.rate)
    print(f"sent {sent} requests, {failed} failed", flush=True)
    serve.shutdown()


if __name__ == "__main__":
    main()
