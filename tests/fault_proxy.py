"""A reverse proxy in front of a real Ray dashboard that can be made slow, for fault tests and the
scrape-path benchmark. Run as its own process (stopped by PID, which also makes the dashboard
"unreachable" for whoever points at the proxy):

    python tests/fault_proxy.py --listen 127.0.0.1:18265 --target http://127.0.0.1:8265

Control: ``GET /__proxy/delay?seconds=12`` delays every later answer by that long before it is
forwarded (0 restores pass-through); ``GET /__proxy/stats`` returns requests seen per path.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests


def serve(listen: str, target: str) -> None:
    host, port = listen.rsplit(":", 1)
    state = {"delay": 0.0}
    hits: Counter[str] = Counter()
    lock = threading.Lock()
    session = requests.Session()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path.startswith("/__proxy/"):
                self._control(url.path, parse_qs(url.query))
                return
            with lock:
                hits[url.path] += 1
                delay = state["delay"]
            if delay:
                time.sleep(delay)
            try:
                upstream = session.get(target + self.path, timeout=120)
            except requests.RequestException as error:
                self._reply(502, json.dumps({"error": str(error)}).encode())
                return
            self._reply(upstream.status_code, upstream.content, upstream.headers.get("Content-Type"))

        def _control(self, path: str, query: dict[str, list[str]]) -> None:
            if path == "/__proxy/delay":
                with lock:
                    state["delay"] = float(query.get("seconds", ["0"])[0])
                self._reply(200, json.dumps(state).encode())
            elif path == "/__proxy/stats":
                with lock:
                    self._reply(200, json.dumps(dict(hits)).encode())
            else:
                self._reply(404, b"{}")

        def _reply(self, status: int, body: bytes, content_type: str | None = "application/json") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type or "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up waiting (its own deadline)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args()
    serve(args.listen, args.target.rstrip("/"))


if __name__ == "__main__":
    main()
