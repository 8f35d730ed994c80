"""The router's HTTP endpoints, on a small threaded server beside the loop:

- ``/healthz``: 200 while the worker runs (503 once it hit a fatal error);
- ``/readyz``: 200 once the consent view is loaded for every assigned partition; 503 before
  the first assignment, while loading, after a revocation until the next assignment;
- ``/metrics``: Prometheus text format.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from consentgate.router.state import LoopState

__all__ = ["WebServer"]

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, state: LoopState, host: str, port: int) -> None:
        self.state = state
        handler = _handler(state)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="router-web", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("serving /healthz /readyz /metrics on %s:%d", *self._server.server_address[:2])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(state: LoopState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok = state.fatal is None
                self._json(200 if ok else 503, {"status": "ok" if ok else state.fatal})
            elif path == "/readyz":
                body = {
                    "ready": state.ready,
                    "partitions": sorted(state.assigned),
                    "loading": {
                        str(p): {"position": a, "end": b} for p, (a, b) in state.loading.items()
                    },
                }
                self._json(200 if state.ready else 503, body)
            elif path == "/metrics":
                data = state.metrics.render()
                self._send(200, data, CONTENT_TYPE_LATEST)
            else:
                self._json(404, {"error": "not found"})

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("web: " + format, *args)

    return Handler
