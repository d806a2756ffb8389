"""A small HTTP endpoint: ``/health`` (JSON, 200 while serving) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def start_http(bind: str, port: int, health: Callable[[], dict[str, Any]], metrics: Callable[[], str]
               ) -> ThreadingHTTPServer:
    """Serve in a daemon thread; ``shutdown()`` the returned server to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                body, kind = json.dumps(health()).encode(), "application/json"
            elif self.path == "/metrics":
                body, kind = metrics().encode(), "text/plain; version=0.0.4"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((bind, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="medcam-http", daemon=True).start()
    return server
