"""``/healthz``: 200 with the counters while the loop polls, 503 once it has not polled for
longer than allowed; other paths 404."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from podmortem.watch.health import Health, serve


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback test server
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        e.close()
        return e.code, json.loads(body) if body.startswith(b"{") else {}


def test_healthz_ok_then_stale() -> None:
    h = Health(stale_after=0.5)
    srv = serve(h, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        h.beat(events=42)
        code, doc = get(base + "/healthz")
        assert code == 200 and doc["status"] == "ok" and doc["events"] == 42
        time.sleep(0.7)
        code, doc = get(base + "/healthz")
        assert code == 503 and doc["status"] == "stale"
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(base + "/secrets", timeout=10)  # noqa: S310
        assert exc.value.code == 404
        exc.value.close()
    finally:
        srv.shutdown()
        srv.server_close()
