"""``audit analyze --engine spark`` against the embedded engine: the same input must give the
same events, caveats and findings (rule ids, audit_ids, severities, actors), on the test
fixtures, the public corpus (with SigmaHQ's rules) and a generated million events."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from spark_support import assert_identical, spark  # noqa: F401 - the session fixture

from podmortem.audit.analyze import analyze
from podmortem.audit.spark.engine import analyze_spark
from podmortem.errors import InputError

pytestmark = pytest.mark.spark

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
REPO = HERE.parents[1]


def _corpus() -> Path:
    env = os.environ.get("PODMORTEM_CORPUS")
    path = Path(env) if env else (REPO / ".." / "shared" / "corpus").resolve()
    if not (path / "k8s-audit").is_dir():
        pytest.skip(f"public corpus not present at {path}")
    return path / "k8s-audit"


def _generator() -> ModuleType:
    path = REPO / "benchmarks" / "gen_audit.py"
    spec = importlib.util.spec_from_file_location("podmortem_gen_audit", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while being built
    spec.loader.exec_module(mod)
    return mod


def both(paths: list[str], spark: Any, **kw: Any) -> tuple[Any, Any]:  # noqa: F811
    embedded = analyze(paths, reconstruction=False, **kw)
    on_spark = analyze_spark(paths, spark=spark, **kw)
    return embedded, on_spark


def test_fixtures_identical(spark: Any) -> None:  # noqa: F811
    embedded, on_spark = both([str(FIXTURES)], spark)
    assert embedded.events_read > 1000
    assert embedded.findings, "the fixtures hold attacks: an empty result proves nothing"
    assert any(c.kind == "duplicates" for c in embedded.caveats)
    assert any(c.kind == "malformed-line" for c in embedded.caveats)
    assert_identical(embedded, on_spark)


def test_public_corpus_with_sigmahq_rules_identical(spark: Any) -> None:  # noqa: F811
    corpus = _corpus()
    paths = [str(corpus / "falco-traces"), str(corpus / "khi-samples")]
    embedded, on_spark = both(paths, spark, sigma_dirs=[corpus / "sigma-rules"])
    assert embedded.rules.count("sigma") > 0
    assert embedded.findings
    assert_identical(embedded, on_spark)


def test_file_urls_go_through_hadoop_and_read_the_same(spark: Any, tmp_path: Path) -> None:  # noqa: F811
    # A file: URL is read by Spark's binaryFile source (the object-store route), a plain
    # path by the workers themselves: the events and findings must not depend on the route.
    src = FIXTURES / "sources"
    url = "file://" + str(src.resolve())
    by_path = analyze_spark([str(src)], spark=spark)
    by_url = analyze_spark([url], spark=spark)
    assert by_url.events_read == by_path.events_read > 0
    assert sorted(f.evidence for f in by_url.findings) == sorted(
        f.evidence for f in by_path.findings
    )
    assert all(name.startswith("file:") for name in by_url.files)


def test_object_above_the_limit_is_a_caveat_not_a_silent_gap(spark: Any) -> None:  # noqa: F811
    src = FIXTURES / "sources"
    url = "file://" + str(src.resolve())
    result = analyze_spark([url], spark=spark, max_object_bytes=200)
    big = [c for c in result.caveats if c.kind == "object-too-large"]
    assert big, "objects above 200 bytes must be reported"
    assert all(c.provenance and str(c.provenance.artifact).startswith("file:") for c in big)


@pytest.mark.slow
def test_generated_million_events_identical(spark: Any, tmp_path: Path) -> None:  # noqa: F811
    gen = _generator()
    n = int(os.environ.get("PODMORTEM_SPARK_EVENTS", "1000000"))
    gen.generate(tmp_path, n)
    embedded, on_spark = both([str(tmp_path)], spark)
    assert embedded.events_read >= n * 0.99
    assert_identical(embedded, on_spark)


@pytest.mark.parametrize("url", ["file:///nonexistent/podmortem/audit", "gs://no-connector/x/"])
def test_a_url_spark_cannot_list_is_an_input_error(spark: Any, url: str) -> None:  # noqa: F811
    with pytest.raises(InputError) as info:
        analyze_spark([url], spark=spark)
    assert url in str(info.value) and "\n" not in str(info.value)
