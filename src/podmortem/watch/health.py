"""``/healthz``: 200 while the watch loop keeps polling, 503 when it has not polled for
``stale_after`` seconds (stuck in a call, or dead), with the counters as JSON."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Health:
    def __init__(self, stale_after: float = 60.0) -> None:
        self.stale_after = stale_after
        self.last_poll = time.monotonic()
        self.counters: dict[str, Any] = {}
        self._lock = threading.Lock()

    def beat(self, **counters: Any) -> None:
        with self._lock:
            self.last_poll = time.monotonic()
            self.counters.update(counters)

    def status(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            age = time.monotonic() - self.last_poll
            doc = {
                "status": "ok" if age < self.stale_after else "stale",
                "last_poll_age_s": round(age, 3),
                **self.counters,
            }
        return (200 if age < self.stale_after else 503), doc


def serve(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; returns the server (``.server_address``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/healthz", "/livez", "/readyz"):
                self.send_error(404)
                return
            code, doc = health.status()
            body = json.dumps(doc, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the watch log is structured; no per-request lines on stderr

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="podmortem-healthz", daemon=True).start()
    return server
