"""The audit webhook receiver under a bounded loopback load: concurrent clients post
EventList batches over TLS, mixed with malformed, oversized, unauthenticated and wrongly
shaped ones. Each bad request gets its own status; every event of every good batch is
spooled exactly once and reaches the detector."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from pathlib import Path

import pytest
from burst import burst
from loopback_tls import tls_pair

from podmortem.errors import InputError
from podmortem.watch.sources.webhook import Rejected, WebhookSource, events_of

TOKEN = "s3cret-token"  # noqa: S105 - a test token for a loopback server


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tls_pair(tmp_path_factory.mktemp("tls"))


def post(
    addr: tuple[str, int],
    cert: Path,
    body: bytes,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> int:
    ctx = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection(addr[0], addr[1], context=ctx, timeout=30)
    h = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", "/", body=body, headers=h)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (ConnectionError, OSError):
        return -1
    finally:
        conn.close()


def eventlist(events: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}
    ).encode()


def test_load_with_bad_batches(tmp_path: Path, tls: tuple[Path, Path]) -> None:
    cert, key = tls
    src = WebhookSource(
        spool_dir=tmp_path / "spool",
        token=TOKEN,
        tls_cert=cert,
        tls_key=key,
        max_body=256 << 10,
        max_inflight=64,
    )
    try:
        events = burst(4000)
        good = [events[i : i + 100] for i in range(0, len(events), 100)]  # 40 batches
        bad: list[tuple[bytes, str | None, int]] = [
            (b"{not json", TOKEN, 400),
            (b'{"kind":"Event"', TOKEN, 400),
            (json.dumps({"kind": "PodList", "items": []}).encode(), TOKEN, 400),
            (json.dumps({"kind": "EventList", "items": [1, 2]}).encode(), TOKEN, 400),
            (eventlist(burst(3)), None, 401),
            (eventlist(burst(3)), "wrong", 401),
            (b"x" * (300 << 10), TOKEN, 413),  # over max_body: refused before it is read
        ]
        statuses: dict[str, list[int]] = {"good": [], "bad": []}
        lock = threading.Lock()

        def worker(k: int) -> None:
            for j in range(k, len(good), 8):
                s = post(src.address, cert, eventlist(good[j]))
                with lock:
                    statuses["good"].append(s)
            for j in range(k, len(bad), 8):
                body, tok, want = bad[j]
                s = post(src.address, cert, body, token=tok)
                with lock:
                    statuses["bad"].append((s, want))  # type: ignore[arg-type]

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert statuses["good"] == [200] * len(good)
        assert sorted(statuses["bad"]) == sorted((w, w) for _, _, w in bad)  # type: ignore[misc]
        # A client that opens TLS and never sends anything does not block the others.
        import socket

        idle = socket.create_connection(src.address)
        try:
            assert post(src.address, cert, eventlist(burst(2, start=90000))) == 200
        finally:
            idle.close()
        # Everything good is in the spool, once, and the tail hands it out.
        spooled = []
        while (c := src.poll(1 << 20)) is not None:
            spooled += [json.loads(x)["auditID"] for x in c.data.splitlines() if x]
        want = [e["auditID"] for e in events] + [e["auditID"] for e in burst(2, start=90000)]
        assert sorted(spooled) == sorted(want)
    finally:
        src.close()


def test_plain_http_needs_opt_in_and_a_token(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="tls-cert"):
        WebhookSource(spool_dir=tmp_path, token=TOKEN)
    with pytest.raises(InputError, match="token"):
        WebhookSource(spool_dir=tmp_path, insecure_no_tls=True)


def test_missing_content_length_and_get(tmp_path: Path) -> None:
    src = WebhookSource(spool_dir=tmp_path / "s", token=TOKEN, insecure_no_tls=True)
    try:
        conn = http.client.HTTPConnection(*src.address, timeout=10)
        conn.putrequest("POST", "/")
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"0\r\n\r\n")
        assert conn.getresponse().status == 411
        conn.close()
        conn = http.client.HTTPConnection(*src.address, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 405
        conn.close()
    finally:
        src.close()


def test_single_event_body_is_accepted() -> None:
    assert len(events_of(json.dumps(burst(1)[0]).encode())) == 1
    with pytest.raises(Rejected):
        events_of(b"[]")


def test_spool_rotation_is_followed_and_consumed_files_removed(tmp_path: Path) -> None:
    src = WebhookSource(spool_dir=tmp_path / "s", token=TOKEN, insecure_no_tls=True, rotate_at=4096)
    try:
        for k in range(10):
            assert post_plain(src.address, eventlist(burst(5, start=k * 5))) == 200
        src.seek(None)
        got = []
        last = None
        while (c := src.poll(1 << 20)) is not None:
            got += [json.loads(x)["auditID"] for x in c.data.splitlines() if x]
            last = c.position
        assert sorted(got) == sorted(e["auditID"] for e in burst(50))
        assert last is not None
        src.commit(last)
        assert list((tmp_path / "s").glob("audit-*.jsonl")) == []
    finally:
        src.close()


def post_plain(addr: tuple[str, int], body: bytes) -> int:
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=10)
    try:
        conn.request("POST", "/", body=body, headers={"Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()
