"""A case whose evidence was written by an attacker who wants to own the report and the
examiner's terminal: HTML/JS injection, ANSI and OSC escape sequences, bidi overrides and
Markdown links in pod names, commands, user agents, file paths and process command lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from podmortem.case import Case, index
from podmortem.findings import Finding, Provenance, Severity

HOSTILE = (
    '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
    "\x1b]0;pwned-title\x07\x1b[31mRED\x1b[0m</script><!--<script>"
    "\u202egnp.exe [click](javascript:alert(1)) | pipe"
)


def hostile_case(root: Path) -> Case:
    case = Case.init(root, case_id="HOSTILE-1", examiner="pytest")
    t = "2026-11-20T09:16:02.000000Z"
    ev = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "11111111-1111-1111-1111-111111111111",
        "stage": "ResponseStarted",
        "requestURI": "/api/v1/namespaces/shop/pods/x/exec?command=sh&command=-c&command="
        + "%3Cscript%3Ewindow.__pwned%3D3%3C%2Fscript%3E%1B%5D0%3Bx%07&container=app",
        "verb": "get",
        "user": {"username": HOSTILE, "groups": ["system:authenticated"]},
        "sourceIPs": ["203.0.113.77"],
        "userAgent": HOSTILE,
        "objectRef": {
            "resource": "pods",
            "namespace": "shop",
            "name": HOSTILE,
            "subresource": "exec",
            "apiVersion": "v1",
        },
        "responseStatus": {"code": 101},
        "requestReceivedTimestamp": t,
        "stageTimestamp": t,
    }
    log = root.parent / "hostile-audit.jsonl"
    log.write_text(json.dumps(ev) + "\n")
    from podmortem.audit.analyze import analyze

    analyze([str(log)], case=case)
    acquisition = {
        "targets": [
            {
                "target": "docker://evil",
                "complete": True,
                "identity": {
                    "pid": 1,
                    "image": HOSTILE,
                    "image_digest": "sha256:1",
                    "name": HOSTILE,
                    "labels": {"io.kubernetes.pod.name": HOSTILE},
                },
            }
        ],
        "processes": [
            {
                "target": "docker://evil",
                "pid": 2,
                "ppid": 9,
                "cmdline": [HOSTILE],
                "exe": "/tmp/" + HOSTILE,
                "start_time": "2026-11-20T09:16:03+00:00",
            }
        ],
        "sockets": [{"target": "docker://evil", "proto": "tcp", "local_address": HOSTILE}],
        "fs_changes": [
            {
                "target": "docker://evil",
                "path": "/tmp/" + HOSTILE,
                "change": "added",
                "mtime": "2026-11-20T09:16:04+00:00",
            }
        ],
    }
    case.add_bytes(
        "targets/evil/acquisition.json", json.dumps(acquisition).encode(), source="analysis"
    )
    index.store_findings(
        case,
        "acquire",
        [
            Finding(
                "evil.rule",
                HOSTILE,
                Severity.HIGH,
                ("T1609",),
                datetime(2026, 11, 20, 9, 16, 5, tzinfo=UTC),
                HOSTILE,
                HOSTILE,
                (HOSTILE,),
                Provenance("runtime", "test", HOSTILE, (HOSTILE,)),
            )
        ],
    )
    return case
