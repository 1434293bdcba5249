"""The API server's audit webhook backend (``--audit-webhook-config-file``) posts
``audit.k8s.io/v1 EventList`` batches; we accept them over TLS with a bearer token, append
their events to a spool file (fsync'd before we answer 200), and the watch loop tails that
spool like any audit log file.

Why a spool: the API server re-sends a batch only while it gets errors, so the moment we
answer 200 the events must already be durable; from then on the file-tail bookkeeping
(position saved after the findings and responses) gives exactly-once processing. A batch
re-sent after a lost answer is appended twice; the detector drops the second copy by
(auditID, stage).

Limits, each answered with its own status and nothing else lost: no or wrong token 401,
not POST 405, no Content-Length 411, body over ``max_body`` 413 (not read), more than
``max_inflight`` requests at once 503, not JSON or not an EventList/Event 400.
"""

from __future__ import annotations

import hmac
import os
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from podmortem.errors import InputError
from podmortem.watch.sources.base import Chunk
from podmortem.watch.sources.tail import TailSource

MAX_BODY = 64 << 20
MAX_INFLIGHT = 16
# A refused oversized body is drained up to this much (then the connection is just closed).
DRAIN_LIMIT = 256 << 20
SPOOL_ROTATE = 256 << 20
CLIENT_TIMEOUT_S = 15.0
SPOOL_NAME = "audit.jsonl"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"{text[:80]!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class Rejected(Exception):  # noqa: N818 - an HTTP answer, not a failure of ours
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def events_of(body: bytes) -> list[Any]:
    """The events of an EventList (or of a single Event) body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, f"not JSON: {str(exc)[:120]}") from exc
    if not isinstance(doc, dict):
        raise Rejected(400, "not a JSON object")
    kind = doc.get("kind")
    if kind == "Event":
        return [doc]
    if kind != "EventList" or not isinstance(doc.get("items"), list):
        raise Rejected(400, "not an audit.k8s.io EventList")
    items: list[Any] = doc["items"]
    if not all(isinstance(i, dict) for i in items):
        raise Rejected(400, "an EventList item is not an object")
    return items


class Spool:
    """Append-only JSONL file; rotated by rename so the tail follows it."""

    def __init__(self, folder: Path, rotate_at: int = SPOOL_ROTATE) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / SPOOL_NAME
        self.rotate_at = rotate_at
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def append(self, events: list[Any]) -> None:
        data = b"".join(orjson.dumps(e) + b"\n" for e in events)
        with self._lock:
            os.write(self._fd, data)
            os.fsync(self._fd)
            if os.fstat(self._fd).st_size >= self.rotate_at:
                # Never reuse a name: an unread rotated spool must not be overwritten.
                used = [p.stem.removeprefix("audit-") for p in self.folder.glob("audit-*.jsonl")]
                n = max((int(u) for u in used if u.isdigit()), default=0) + 1
                os.replace(self.path, self.folder / f"audit-{n:06d}.jsonl")
                os.close(self._fd)
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
                )

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, addr: tuple[str, int], receiver: WebhookSource) -> None:
        self.receiver = receiver
        super().__init__(addr, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the request's thread, with a timeout: a client
        # that connects and says nothing must not block the accept loop.
        request.settimeout(CLIENT_TIMEOUT_S)
        ctx = self.receiver.tls
        if ctx is None:
            super().finish_request(request, client_address)
            return
        try:
            # wrap_socket takes the descriptor over: the server's own close of the plain
            # socket then does nothing, so the TLS socket is closed here.
            wrapped = ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.receiver.count("tls_failed")
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, status: int, reason: str) -> None:
        body = orjson.dumps({"status": status, "reason": reason})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.server.receiver.count(str(status))

    def _discard(self, length: int) -> None:
        """Read (and drop) a refused body, so the client is not reset before it reads our
        answer; bounded, and never kept in memory."""
        left = min(length, DRAIN_LIMIT)
        try:
            while left > 0:
                got = self.rfile.read(min(left, 1 << 16))
                if not got:
                    break
                left -= len(got)
        except OSError:
            pass
        self.close_connection = True

    def do_GET(self) -> None:
        self._answer(405, "POST EventList batches")

    def do_POST(self) -> None:
        rx = self.server.receiver
        length = self.headers.get("Content-Length")
        declared = int(length) if length is not None and length.isdigit() else 0
        if not rx.authorized(self.headers.get("Authorization", "")):
            self._answer(401, "bearer token missing or wrong")
            self._discard(min(declared, rx.max_body))
            return
        if length is None or not length.isdigit():
            self._answer(411, "Content-Length required")
            return
        if int(length) > rx.max_body:
            self._answer(413, f"batch larger than {rx.max_body} bytes")
            self._discard(int(length))
            return
        if not rx.slots.acquire(blocking=False):
            self._answer(503, "too many batches at once; retry")
            self._discard(declared)
            return
        try:
            body = self.rfile.read(int(length))
            if len(body) != int(length):
                self.close_connection = True
                rx.count("short_body")
                return
            try:
                events = events_of(body)
            except Rejected as exc:
                self._answer(exc.status, exc.reason)
                return
            rx.spool.append(events)
            rx.count("events", len(events))
            self._answer(200, "ok")
        finally:
            rx.slots.release()


class WebhookSource:
    """Receiver + spool + tail: a :class:`~podmortem.watch.sources.base.Source`."""

    def __init__(
        self,
        *,
        spool_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        token_file: Path | None = None,
        token: str | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        insecure_no_tls: bool = False,
        max_body: int = MAX_BODY,
        max_inflight: int = MAX_INFLIGHT,
        rotate_at: int = SPOOL_ROTATE,
    ) -> None:
        if token_file is not None:
            try:
                token = token_file.read_text().strip()
            except OSError as exc:
                raise InputError(f"cannot read the webhook token file: {exc}") from exc
        if not token:
            raise InputError("the webhook needs a bearer token (--token-file)")
        self._token = f"Bearer {token}".encode()
        self.tls: ssl.SSLContext | None = None
        if tls_cert is not None and tls_key is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ctx.load_cert_chain(str(tls_cert), str(tls_key))
            except (OSError, ssl.SSLError) as exc:
                raise InputError(f"cannot load the webhook TLS certificate/key: {exc}") from exc
            self.tls = ctx
        elif not insecure_no_tls:
            raise InputError("the webhook needs --tls-cert and --tls-key (or --insecure-no-tls)")
        self.max_body = max_body
        self.slots = threading.BoundedSemaphore(max_inflight)
        self.spool = Spool(spool_dir, rotate_at)
        self.tail = TailSource(self.spool.path)
        self.counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        try:
            self.server = _Server((host, port), self)
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port}: {exc}") from exc
        self.server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="podmortem-webhook", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    @property
    def name(self) -> str:
        return "webhook"

    def authorized(self, header: str) -> bool:
        return hmac.compare_digest(header.encode("latin-1", "replace"), self._token)

    def count(self, what: str, n: int = 1) -> None:
        with self._count_lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def seek(self, position: dict[str, Any] | None) -> None:
        if position is None:
            # No saved position: start with the oldest spool not yet deleted.
            old = sorted(self.spool.folder.glob("audit-*.jsonl"))
            if old:
                st = old[0].stat()
                position = {"dev": st.st_dev, "ino": st.st_ino, "offset": 0, "head": ""}
        self.tail.seek(position)

    def poll(self, max_bytes: int) -> Chunk | None:
        return self.tail.poll(max_bytes)

    def commit(self, position: dict[str, Any]) -> None:
        # Rotated spool files are deleted once the committed position is in the live one.
        try:
            st = os.stat(self.spool.path)
        except OSError:
            return
        if position.get("ino") == st.st_ino:
            for old in self.spool.folder.glob("audit-*.jsonl"):
                old.unlink(missing_ok=True)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.spool.close()
        self.tail.close()
