"""KQL checked by Microsoft's own Kusto language service (``Kusto.Language``, published on npm
as ``@kusto/language-service-next``; pinned in kusto/package-lock.json and installed by
``scripts/test.sh`` with ``npm ci --prefix tests/audit/hunt/kusto``).

The service parses each query and binds it against the declared tables, so it reports syntax
errors and semantic ones: an unknown column, table or function, a wrong argument type.

Table schemas are the columns Microsoft documents:

* AKSAudit and AKSAuditAdmin (same columns): Azure Monitor table reference
  (learn.microsoft.com/azure/azure-monitor/reference/tables/aksaudit, /aksauditadmin).
* AzureDiagnostics: the documented standard columns used here (TimeGenerated, Category,
  _ResourceId, Resource..., from .../tables/azurediagnostics) plus ``log_s``, the column AKS
  adds for the kube-audit categories (learn.microsoft.com/azure/aks/monitor-apiserver
  queries ``log_s``); AzureDiagnostics creates columns as resources send them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

KUSTO_DIR = Path(__file__).resolve().parent / "kusto"
PACKAGE = KUSTO_DIR / "node_modules" / "@kusto" / "language-service-next"

_AKS_AUDIT = (
    "(Annotations:dynamic, AuditId:string, _BilledSize:real, _IsBillable:string,"
    " Level:string, ObjectRef:dynamic, PodName:string, RequestObject:dynamic,"
    " RequestReceivedTime:datetime, RequestUri:string, _ResourceId:string,"
    " ResponseObject:dynamic, ResponseStatus:dynamic, SourceIps:dynamic, SourceSystem:string,"
    " Stage:string, StageReceivedTime:datetime, _SubscriptionId:string, TenantId:string,"
    " TimeGenerated:datetime, Type:string, User:dynamic, UserAgent:string, Verb:string)"
)
_AZURE_DIAGNOSTICS = (
    "(Category:string, _ResourceId:string, Resource:string, ResourceGroup:string,"
    " ResourceProvider:string, ResourceType:string, SubscriptionId:string, TenantId:string,"
    " TimeGenerated:datetime, Type:string, SourceSystem:string, OperationName:string,"
    " log_s:string)"
)
TABLES = {
    "AKSAudit": _AKS_AUDIT,
    "AKSAuditAdmin": _AKS_AUDIT,
    "AzureDiagnostics": _AZURE_DIAGNOSTICS,
}


def require_service() -> str:
    """node's path; skips (fails under CI) when node or the npm package is missing."""
    node = shutil.which("node")
    if node is None or not PACKAGE.is_dir():
        why = (
            "Kusto language service not installed:"
            f" run `npm ci --prefix {KUSTO_DIR.relative_to(KUSTO_DIR.parents[3])}`"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return node


def diagnostics(queries: dict[str, str], jobs: int = 2) -> dict[str, list[dict[str, Any]]]:
    """query id -> the service's diagnostics (severity, code, message, start, length).
    Binding a large query takes the service seconds: the queries are split over ``jobs``
    node processes, largest first, round robin."""
    node = require_service()
    order = sorted(queries, key=lambda k: -len(queries[k]))
    chunks = [order[i::jobs] for i in range(jobs) if order[i::jobs]]
    procs = [
        subprocess.Popen(
            [node, str(KUSTO_DIR / "check.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in chunks
    ]
    result: dict[str, list[dict[str, Any]]] = {}
    for proc, chunk in zip(procs, chunks, strict=True):
        doc = {"tables": TABLES, "queries": {k: queries[k] for k in chunk}}
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(doc))
        proc.stdin.close()
    for proc in procs:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        assert proc.wait(timeout=600) == 0, err[-2000:]
        result.update(json.loads(out))
    assert set(result) == set(queries)
    return result
