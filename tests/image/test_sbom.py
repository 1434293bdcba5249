"""CycloneDX SBOM: schema-valid, built by cyclonedx-python-lib, with purls."""

from __future__ import annotations

import json

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from podmortem.image.analysis import Analysis
from podmortem.image.sbom import build_sbom


def test_sbom_is_valid_cyclonedx_with_purls(compromised_analysis: Analysis) -> None:
    text = build_sbom(compromised_analysis)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    purls = sorted(c["purl"] for c in doc["components"])
    assert purls == [
        "pkg:deb/debian/coreutils@9.1-1?arch=amd64",
        "pkg:deb/debian/dash@0.5.12-2?arch=amd64",
        "pkg:deb/debian/mawk@1.3.4.20200120-3.1?arch=amd64",
        "pkg:deb/debian/passwd@1:4.13%2Bdfsg1-1?arch=amd64",
    ]
    assert doc["metadata"]["component"]["type"] == "container"
    assert doc["metadata"]["component"]["name"] == "example.org/test/compromised:1"
