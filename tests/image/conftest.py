"""Fixtures: the compromised test image written once per session in every layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from podmortem.image.analysis import Analysis, analyze

from .builders import LAYOUTS, base_spec, compromised_spec


@pytest.fixture(scope="session")
def compromised_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec, _ = compromised_spec()
    out = {}
    for name, writer in LAYOUTS.items():
        d = tmp_path_factory.mktemp(name)
        out[name] = writer(spec, d)
    return out


@pytest.fixture(scope="session")
def expected_findings() -> list[tuple[str, str, int | None, int | None]]:
    return compromised_spec()[1]


@pytest.fixture(scope="session")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return LAYOUTS["oci-dir-gzip"](base_spec(), tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def compromised_analysis(compromised_images: dict[str, Path]) -> Analysis:
    return analyze(compromised_images["docker-oci"])
