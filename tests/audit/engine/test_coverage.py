"""Caveats about what the provider's audit policy could not have logged."""

from __future__ import annotations

from typing import Any

from audit_rows import make_table

from podmortem.audit.coverage import MIN_EVENTS_FOR_ABSENCE, blind_spots


def _events(n: int, verb: str, *, provider_body: bool = False) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        e: dict[str, Any] = {
            "auditID": f"id-{i}",
            "stage": "ResponseComplete",
            "verb": verb,
            "objectRef": {"resource": "pods", "namespace": "p"},
        }
        if provider_body:
            e["requestObject"] = {"kind": "Pod"}
        out.append(e)
    return out


def _kinds(events: list[dict[str, Any]], provider: str = "native") -> set[str]:
    con = make_table(events)
    con.execute("UPDATE audit_events SET provider = ?", [provider])
    return {c.kind for c in blind_spots(con, "audit_events")}


def test_no_reads_and_no_bodies_over_many_events_are_caveats() -> None:
    kinds = _kinds(_events(MIN_EVENTS_FOR_ABSENCE, "create"))
    assert {"no-read-events", "no-request-bodies"} <= kinds


def test_a_small_sample_proves_nothing() -> None:
    assert _kinds(_events(3, "create")) == set()


def test_reads_and_bodies_present_means_no_caveat() -> None:
    events = _events(40, "get") + _events(40, "create", provider_body=True)
    assert _kinds(events) == set()


def test_eks_and_gke_policies_hide_event_deletion_and_secret_bodies() -> None:
    for provider in ("eks", "gke"):
        kinds = _kinds(_events(2, "get"), provider)
        assert {"policy-events-invisible", "policy-metadata-only"} <= kinds
    assert "policy-events-invisible" not in _kinds(_events(2, "get"), "aks")
