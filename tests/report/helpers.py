"""Hand-made evidence for correlation tests: an exec in the audit log and a runtime target
with processes and files, in the shapes the case holds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from podmortem.case import Case
from podmortem.report.evidence import AuditEvent, CaseEvidence, ImageDocument, RuntimeTarget

T0 = datetime(2026, 11, 20, 9, 16, 2, tzinfo=UTC)
TARGET = "docker://payments"


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def exec_event(
    audit_id: str,
    seconds: float,
    command: list[str],
    *,
    pod: str = "payments-1",
    namespace: str = "shop",
    container: str = "app",
) -> AuditEvent:
    return AuditEvent(
        audit_id=audit_id,
        time=T0 + timedelta(seconds=seconds),
        verb="get",
        username="system:serviceaccount:shop:web",
        source_ips=["203.0.113.77"],
        user_agent="kubectl",
        resource="pods",
        namespace=namespace,
        name=pod,
        subresource="exec",
        request_uri="/exec",
        code=101,
        exec_command=command,
        exec_container=container,
        request_object=None,
        provider="native",
    )


def proc(pid: int, ppid: int, seconds: float, argv: list[str], exe: str) -> dict[str, Any]:
    return {
        "target": TARGET,
        "pid": pid,
        "ns_pid": pid - 1000,
        "ppid": ppid,
        "cmdline": argv,
        "exe": exe,
        "exe_deleted": False,
        "exe_memfd": False,
        "start_time": at(seconds),
    }


def change(path: str, kind: str, seconds: float) -> dict[str, Any]:
    return {
        "target": TARGET,
        "path": path,
        "change": kind,
        "type": "file",
        "mtime": at(seconds),
        "sha256": "0" * 64,
        "size": 1,
    }


def runtime(
    processes: list[dict[str, Any]],
    changes: list[dict[str, Any]],
    *,
    init_pid: int = 1001,
    image_id: str = "sha256:abc",
) -> RuntimeTarget:
    ident = {
        "container_id": "c" * 64,
        "pid": init_pid,
        "image": "shop/payments:1",
        "image_digest": image_id,
        "name": "payments",
        "runtime": "docker",
        "labels": {
            "io.kubernetes.pod.name": "payments-1",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.container.name": "app",
        },
    }
    return RuntimeTarget(TARGET, ident, {}, processes, [], changes, True, "artifacts/acq.json")


def image(layers: list[dict[str, Any]], image_id: str = "sha256:abc") -> ImageDocument:
    return ImageDocument(
        "artifacts/analysis/image-1.json",
        {"image": {"config_digest": image_id, "repo_tags": ["shop/payments:1"]}, "layers": layers},
    )


def evidence(
    tmp: Path, audit: list[AuditEvent], rts: list[RuntimeTarget], images: list[ImageDocument] = ()
) -> CaseEvidence:  # type: ignore[assignment]
    ev = CaseEvidence(Case.init(tmp / "case", case_id="T", examiner="t"))
    ev.audit = list(audit)
    ev.audit_total = len(audit)
    ev.runtime = list(rts)
    ev.images = list(images)
    return ev
