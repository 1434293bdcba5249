"""The JSON report of one analysis (the ``--json`` contract of ``image analyze``).

Paths are absolute (``/etc/passwd``), ``layer_index`` counts from 0 in the image's layer
order, config-level findings name a ``config_key`` instead of a path. Secret values never
appear: findings carry key, location and hash, and ``created_by`` strings are redacted with
the same secret patterns before they are written.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import podmortem
from podmortem.findings import Finding
from podmortem.image.analysis import Analysis
from podmortem.image.indicators import redact

FINDING_KEYS = (
    "rule_id",
    "title",
    "severity",
    "techniques",
    "path",
    "config_key",
    "layer_index",
    "layer_diff_id",
    "hidden_by_layer",
    "evidence",
)


def finding_dict(f: Finding) -> dict[str, Any]:
    extra = dict(f.extra)
    out: dict[str, Any] = {
        "rule_id": f.rule_id,
        "title": f.title,
        "severity": str(f.severity),
        "techniques": list(f.techniques),
        "path": extra.pop("path", None),
        "config_key": extra.pop("config_key", None),
        "layer_index": extra.pop("layer_index", None),
        "layer_diff_id": extra.pop("layer_diff_id", None),
        "hidden_by_layer": extra.pop("hidden_by_layer", None),
        "evidence": list(f.evidence),
        "summary": f.summary,
    }
    out.update(extra)
    return out


def report_dict(a: Analysis) -> dict[str, Any]:
    img = a.image
    layers = []
    for layer in a.layers:
        d = layer.to_dict()
        d["created_by"] = redact(d["created_by"])
        if a.base_source is not None:
            d["attributed_to"] = "base" if layer.index < a.base_layers else "derived"
        layers.append(d)
    severities = Counter(str(f.severity) for f in a.findings)
    return {
        "tool": {"name": "podmortem", "version": podmortem.__version__},
        "image": {
            "source": img.source,
            "layout": img.layout,
            "digest": img.manifest_digest,
            "config_digest": img.config_digest,
            "tags": img.tags,
            "platform": img.platform,
            "base": (
                {"source": a.base_source, "shared_layers": a.base_layers}
                if a.base_source is not None
                else None
            ),
        },
        "layers": layers,
        "packages": [p.to_dict() for p in a.inventory.packages],
        "package_databases": a.inventory.databases,
        "findings": [finding_dict(f) for f in a.findings],
        "caveats": [c.to_dict() for c in a.caveats],
        "summary": {
            "findings": len(a.findings),
            "by_severity": dict(sorted(severities.items())),
            "hidden_findings": sum(
                1 for f in a.findings if f.extra.get("hidden_by_layer") is not None
            ),
            "packages": len(a.inventory.packages),
            "layers": len(a.layers),
        },
        "stats": a.stats,
        "timings_s": {k: round(v, 4) for k, v in a.timings.items()},
    }
