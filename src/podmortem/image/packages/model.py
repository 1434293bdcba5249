"""Packages as the image's own databases record them, and the files each one owns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from packageurl import PackageURL


@dataclass
class Package:
    name: str
    version: str
    ecosystem: str  # deb apk rpm pypi
    arch: str = ""
    distro: str = ""  # debian, ubuntu, alpine, fedora... (purl namespace)
    database: str = ""  # the file that recorded it
    # absolute path -> (algorithm, hex digest or "" when the database records none)
    files: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def purl(self) -> str:
        """Package URL (purl spec): ``pkg:deb/debian/ls@9.1-1?arch=amd64``; encoding is left
        to packageurl-python, the purl reference implementation."""
        if self.ecosystem == "pypi":
            name = self.name.lower().replace("_", "-").replace(".", "-")
            return PackageURL(type="pypi", name=name, version=self.version).to_string()
        default = {"deb": "debian", "apk": "alpine", "rpm": "redhat"}[self.ecosystem]
        return PackageURL(
            type=self.ecosystem,
            namespace=self.distro or default,
            name=self.name,
            version=self.version,
            qualifiers={"arch": self.arch} if self.arch else None,
        ).to_string()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "type": self.ecosystem,
            "arch": self.arch,
            "purl": self.purl,
            "database": self.database,
            "files": len(self.files),
        }
