"""Fixtures for the report tests: the bundled example scenario built and investigated once
per session (offline: the compromised image and the two audit logs), and a small factory for
hand-made cases with hostile strings."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def examples() -> Iterator[dict[str, ModuleType]]:
    """The example builders (``examples/`` is not a package: put it on the path)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import compromised_image
        import make_examples

        yield {"image": compromised_image, "audit": make_examples}
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="session")
def offline_case(tmp_path_factory: pytest.TempPathFactory, examples: dict[str, ModuleType]) -> Path:
    """The README's example, offline: investigate the image and both audit logs."""
    from podmortem.case import Case
    from podmortem.investigate import Plan, investigate

    work = tmp_path_factory.mktemp("example")
    img = examples["image"].build(work / "payments-image.tar")
    case = Case.init(work / "case", case_id="EXAMPLE-1", examiner="pytest")
    audit = [EXAMPLES / "audit" / "eks-attack.json", EXAMPLES / "audit" / "native-attack.jsonl"]
    out = investigate(case, Plan(audit=audit, images=[str(img.path)], budget=120))
    assert [s["status"] for s in out.steps] == ["done", "done"], out.steps
    return case.root
