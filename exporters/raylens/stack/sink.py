"""A local Alertmanager webhook receiver that appends each notification to a JSON-lines file.

`raylens up` points every receiver of the shipped Alertmanager config here, with the receiver's
name as the URL path, so a user (or a test) reads exactly what would have been sent where::

    {"received_at": "2026-11-25T10:00:00Z", "receiver": "oncall", "status": "firing",
     "alerts": [{"labels": {"alertname": "RaylensNodeDown", ...}, "annotations": {...}}], ...}

Run: ``python -m raylens.stack.sink --listen 127.0.0.1:9097 --log notifications.jsonl``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from raylens.config import parse_listen_address


def make_handler(log_path: Path, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self.send_error(400, "expected a JSON body")
                return
            record = {
                "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "receiver": self.path.strip("/") or "default",
                **payload,
            }
            with lock, log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(record, sort_keys=True) + "\n")
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b"ok\n" if self.path == "/healthz" else b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def serve(listen: str, log_path: Path) -> ThreadingHTTPServer:
    host, port = parse_listen_address(listen)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.touch()
    return ThreadingHTTPServer((host or "127.0.0.1", port), make_handler(log_path, threading.Lock()))


def read_notifications(log_path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9097")
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    server = serve(args.listen, args.log)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
