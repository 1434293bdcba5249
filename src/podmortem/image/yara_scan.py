"""``--yara DIR``: the user's YARA rules (yara-x) over every file of every layer, hidden
versions included. Content comes from the layer stream (bounded per file); nothing is
written to disk for the scanner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podmortem.errors import CapabilityUnavailable, InputError
from podmortem.image.catalog import Notes
from podmortem.image.model import Entry

RULE_SUFFIXES = (".yar", ".yara")
SCAN_TIMEOUT_S = 10


class YaraScanner:
    def __init__(self, rules_dir: Path) -> None:
        try:
            import yara_x
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise CapabilityUnavailable("yara-x is not installed (pip install yara-x)") from exc
        self._yara_x = yara_x
        files = sorted(
            p for p in rules_dir.rglob("*") if p.is_file() and p.suffix.lower() in RULE_SUFFIXES
        )
        if not rules_dir.is_dir() or not files:
            raise InputError(f"{rules_dir} holds no .yar/.yara rule files")
        compiler = yara_x.Compiler()
        for f in files:
            try:
                compiler.new_namespace(f.stem)
                compiler.add_source(f.read_text(encoding="utf-8", errors="replace"), origin=str(f))
            except yara_x.CompileError as exc:
                raise InputError(f"YARA rule file {f} does not compile: {exc}") from exc
        self.rule_files = [str(f) for f in files]
        self._scanner = yara_x.Scanner(compiler.build())
        self._scanner.set_timeout(SCAN_TIMEOUT_S)
        self.scanned = 0
        self.truncated = 0

    def scan(self, entry: Entry, data: bytes, complete: bool, notes: Notes) -> None:
        self.scanned += 1
        if not complete:
            self.truncated += 1
        try:
            results = self._scanner.scan(data)
        except (self._yara_x.TimeoutError, self._yara_x.ScanError) as exc:
            notes.caveat(
                "yara-scan", f"YARA scan of {entry.path} (layer {entry.layer}) failed: {exc}"
            )
            return
        for m in results.matching_rules:
            meta: dict[str, Any] = {str(k): v for k, v in m.metadata}
            notes.hit(
                "image.yara.match",
                f"YARA rule {m.namespace}:{m.identifier} matched {entry.path}",
                path=entry.path,
                layer=entry.layer,
                sha256=entry.sha256,
                entry=entry,
                evidence=tuple(
                    f"{p.identifier}@{x.offset}+{x.length}" for p in m.patterns for x in p.matches
                )[:10],
                extra={
                    "yara_rule": f"{m.namespace}:{m.identifier}",
                    "yara_tags": list(m.tags),
                    "yara_meta": meta,
                    "scanned_bytes": len(data),
                    "file_complete": complete,
                },
            )
