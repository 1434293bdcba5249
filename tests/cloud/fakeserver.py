"""A small recording HTTP server on 127.0.0.1 for the SDK tests: it answers documented
REST paths from a route table and records every request (method, path, query, body), so a
test can assert exactly what a step sent. Only loopback: nothing leaves the machine."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]

    @property
    def call(self) -> tuple[str, str]:
        return (self.method, self.path)


Handler = Callable[[Request, re.Match[str]], tuple[int, Any]]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


@dataclass
class RecordingServer:
    routes: list[Route] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(method, re.compile("^" + pattern + "$"), fn))
            return fn

        return deco

    def start(self) -> str:
        server = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the body waits for the
            # client's delayed ACK (about 40 ms a request on loopback).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                req = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    body,
                    {k.lower(): v for k, v in self.headers.items()},
                )
                server.requests.append(req)
                for r in server.routes:
                    m = r.pattern.match(parts.path)
                    if m and r.method == self.command:
                        status, payload = r.handler(req, m)
                        break
                else:
                    status, payload = (
                        404,
                        {"error": {"code": "NotFound", "message": f"no route {parts.path}"}},
                    )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    def clear(self) -> None:
        self.requests.clear()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out
