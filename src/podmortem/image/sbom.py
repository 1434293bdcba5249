"""CycloneDX JSON SBOM of the packages the image's own databases record, written with
cyclonedx-python-lib (the CycloneDX project's library), never by hand."""

from __future__ import annotations

from cyclonedx.contrib.hash.factories import HashTypeFactory
from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

import podmortem
from podmortem.image.analysis import Analysis

SCHEMA = SchemaVersion.V1_6


def build_sbom(a: Analysis) -> str:
    img = a.image
    bom = Bom()
    name = img.tags[0] if img.tags else img.config_digest
    root = Component(
        name=name,
        version=img.manifest_digest or img.config_digest,
        type=ComponentType.CONTAINER,
        bom_ref=f"image:{img.config_digest}",
        properties=[
            Property(name="podmortem:config_digest", value=img.config_digest),
            Property(name="podmortem:platform", value=img.platform),
            Property(name="podmortem:layout", value=img.layout),
        ],
    )
    if img.config_digest.startswith("sha256:"):
        root.hashes.add(HashTypeFactory().from_composite_str(img.config_digest))
    bom.metadata.component = root
    bom.metadata.properties.add(Property(name="podmortem:version", value=podmortem.__version__))
    components = []
    refs: set[str] = set()
    for pkg in a.inventory.packages:
        ref = pkg.purl
        n = 1
        while ref in refs:  # the same package recorded twice (two dist-info copies)
            n += 1
            ref = f"{pkg.purl}#{n}"
        refs.add(ref)
        c = Component(
            name=pkg.name,
            version=pkg.version,
            type=ComponentType.APPLICATION if pkg.ecosystem == "pypi" else ComponentType.LIBRARY,
            purl=PackageURL.from_string(pkg.purl),
            bom_ref=ref,
            properties=[Property(name="podmortem:package_database", value=pkg.database)],
        )
        components.append(c)
    # one bulk insert: the set stays sorted, but Component comparisons are costly and
    # adding one at a time bisects for each
    bom.components.update(components)
    bom.register_dependency(root, components)
    return str(make_outputter(bom, OutputFormat.JSON, SCHEMA).output_as_string(indent=2))
