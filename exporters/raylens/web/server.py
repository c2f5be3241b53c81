"""The exporter's HTTP(S) server: ``/metrics``, a landing page on ``/``, ``/healthz``, and on a
cluster-role exporter the JSON routes of ``raylens.ray.endpoints`` (``/sd/*``, ``/health/cluster``).

``/metrics`` mirrors prometheus-client's ``make_wsgi_app``: its own content negotiation
(``choose_encoder``), gzip and ``name[]`` filtering, so they behave exactly as in every client_python
exporter, but the body comes from ``raylens.web.exposition``, which writes the same bytes at a
fraction of the CPU. TLS and basic auth come from an exporter-toolkit web config (see ``webconfig.py``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import html
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from raylens import __version__
from raylens.scrape_priority import SCRAPES
from raylens.web.exposition import ExpositionRenderer
from raylens.web.webconfig import WebConfig

log = logging.getLogger("raylens.web")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # A scrape that arrives while another is in flight must not be refused.
    request_queue_size = 64


class _ThreadingServerV6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"client": self.client_address[0], "request": format % args})


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes.

    bcrypt costs tens of milliseconds by design; a verified (user, password) pair is remembered by
    its SHA-256 so that a scrape every few seconds does not pay that each time (exporter-toolkit
    caches the same way).
    """

    def __init__(self, users: dict[str, str]):
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
        with self._lock:
            if any(hmac.compare_digest(key, seen) for seen in self._verified):
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._verified.add(key)
        return True


def _landing_page(collectors: list[str]) -> bytes:
    items = "".join(f"<li>{html.escape(name)}</li>" for name in collectors)
    return (
        "<!doctype html><html><head><title>raylens exporter</title></head><body>"
        f"<h1>raylens exporter {html.escape(__version__)}</h1>"
        '<p><a href="metrics">Metrics</a> · <a href="healthz">Health</a></p>'
        f"<p>Collectors:</p><ul>{items}</ul></body></html>"
    ).encode()


def make_metrics_app(registry: CollectorRegistry) -> WsgiApp:
    """prometheus-client's ``make_wsgi_app(registry)`` with its encoder swapped for the cached renderer."""
    renderer = ExpositionRenderer()

    def metrics_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET")])
            return [b""]
        if method != "GET":
            status = "405 Method Not Allowed"
            start_response(status, [("Allow", "OPTIONS,GET")])
            return [f"# HTTP {status}: {method}; use OPTIONS or GET\n".encode()]
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        params = parse_qs(environ.get("QUERY_STRING", ""))
        if "name[]" in params:
            # A filtered render would evict every series it leaves out, so the next full scrape would be
            # cold: prometheus-client renders these (rare, small) bodies itself.
            output = encoder(registry.restricted_registry(params["name[]"]))
        else:
            output = renderer.encoder_for(encoder)(registry)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            output = gzip.compress(output)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [output]

    return metrics_app


JsonRoute = Callable[[str], tuple[int, bytes]]
_STATUS_LINES = {200: "200 OK", 400: "400 Bad Request", 503: "503 Service Unavailable"}


def make_app(
    registry: CollectorRegistry,
    web_config: WebConfig,
    collectors: list[str],
    json_routes: Mapping[str, JsonRoute] | None = None,
) -> WsgiApp:
    """``json_routes`` maps a path to a handler of the query string answering (status, JSON body)."""
    json_routes = dict(json_routes or {})
    metrics_app = make_metrics_app(registry)
    auth = BasicAuth(web_config.basic_auth_users) if web_config.basic_auth_users else None
    extra_headers = list(web_config.http_server_config.headers.items())
    landing = _landing_page(collectors)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, headers + extra_headers, exc_info)

        if auth is not None and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            respond(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="raylens"'), ("Content-Type", "text/plain")],
            )
            return [b"Unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            with SCRAPES.serving():  # the exporter's background work waits for it (raylens.scrape_priority)
                return metrics_app(environ, respond)
        if path == "/healthz":
            respond("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        if path == "/":
            respond("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        if path in json_routes:
            status, body = json_routes[path](environ.get("QUERY_STRING", ""))
            respond(_STATUS_LINES.get(status, f"{status} Error"), [("Content-Type", "application/json")])
            return [body]
        if path.startswith(("/sd/", "/health/")):
            respond("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not here: service discovery and cluster health are served by the cluster-role exporter\n"]
        respond("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not found; try /metrics\n"]

    return app


def make_http_server(host: str, port: int, app: WsgiApp, web_config: WebConfig) -> WSGIServer:
    """Bind (port 0 picks a free one) and, with a TLS config, wrap the listening socket."""
    if not host:
        # Empty host means every interface, IPv6 too where the kernel offers dual stack.
        host = "::" if socket.has_dualstack_ipv6() else "0.0.0.0"
    server_class = _ThreadingServerV6 if ":" in host else _ThreadingServer
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    tls = web_config.tls_server_config
    if tls is not None:
        server.socket = tls.ssl_context().wrap_socket(server.socket, server_side=True)
    return server
