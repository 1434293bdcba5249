"""Accounting: every input record ends as an event, a counted skip with a reason, or a caveat.

A broken export can hold a million bad lines; one caveat per line would drown the report. The
first few caveats of each kind per file are kept individually (with file and line), the rest
are counted and summarised in one caveat per kind and file, so nothing goes unreported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from podmortem.findings import Caveat, Provenance

PARSER = "podmortem.audit.sources"
CAVEATS_PER_KIND = 20


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What :func:`podmortem.audit.sources.load` read.

    ``events_read`` counts normalized events in the table after deduplication;
    ``events_by_source`` splits them by ``provider/envelope``; ``skipped`` counts input
    records that are not audit events, by reason; ``caveats`` say what the evidence could not
    tell (truncated or malformed records, duplicates dropped, files not recognised).
    """

    events_read: int
    events_by_source: dict[str, int]
    caveats: list[Caveat]
    skipped: dict[str, int]
    files: list[str]
    duplicates: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "events_read": self.events_read,
            "events_by_source": dict(self.events_by_source),
            "caveats": [c.to_dict() for c in self.caveats],
            "skipped": dict(self.skipped),
            "files": list(self.files),
            "duplicates": self.duplicates,
        }


@dataclass
class Tally:
    """Mutable counters shared by the readers while a load runs."""

    skipped: Counter[str] = field(default_factory=Counter)
    caveats: list[Caveat] = field(default_factory=list)
    _per_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    _skips_by_file: dict[str, Counter[str]] = field(default_factory=dict)
    _first_skip: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    staged: int = 0

    def skip(self, reason: str, file: str, location: tuple[str, ...] = (), n: int = 1) -> None:
        """Count ``n`` records that are not audit events; one caveat per reason and file
        (with the first location) is written by :meth:`summarise`."""
        self.skipped[reason] += n
        self._skips_by_file.setdefault(reason, Counter())[file] += n
        self._first_skip.setdefault((reason, file), location)

    def caveat(
        self,
        kind: str,
        message: str,
        file: str,
        location: tuple[str, ...] = (),
        **details: Any,
    ) -> None:
        key = (kind, file)
        self._per_kind[key] += 1
        if self._per_kind[key] > CAVEATS_PER_KIND:
            return
        prov = Provenance(source="file", parser=PARSER, artifact=file, location=location)
        self.caveats.append(Caveat(kind=kind, message=message, provenance=prov, details=details))

    def to_dict(self, name: str) -> dict[str, Any]:
        """The counters of one file's load, as JSON data (how a Spark worker hands its
        accounting back: data, not pickled objects)."""
        return {
            "name": name,
            "caveats": [c.to_dict() for c in self.caveats],
            "skipped": dict(self.skipped),
            "skips_by_file": {r: dict(f) for r, f in self._skips_by_file.items()},
            "first_skip": [[r, f, list(loc)] for (r, f), loc in self._first_skip.items()],
            "per_kind": [[k, f, n] for (k, f), n in self._per_kind.items()],
        }

    def merge(self, d: Mapping[str, Any]) -> None:
        """Add one file's accounting (:meth:`to_dict`) to this run's. Merged in input order,
        caveats come out in the order a single load writes them."""
        self.caveats += [Caveat.from_dict(c) for c in d["caveats"]]
        self.skipped.update({str(k): int(v) for k, v in d["skipped"].items()})
        for reason, files in d["skips_by_file"].items():
            self._skips_by_file.setdefault(str(reason), Counter()).update(
                {str(f): int(n) for f, n in files.items()}
            )
        for reason, file, loc in d["first_skip"]:
            self._first_skip.setdefault((str(reason), str(file)), tuple(str(x) for x in loc))
        for kind, file, n in d["per_kind"]:
            self._per_kind[(str(kind), str(file))] += int(n)

    def summarise(self) -> None:
        """Add one caveat per skip reason and file, and one per (kind, file) whose individual
        caveats were capped."""
        for reason, files in sorted(self._skips_by_file.items()):
            for file, n in sorted(files.items()):
                prov = Provenance(
                    source="file",
                    parser=PARSER,
                    artifact=file,
                    location=self._first_skip.get((reason, file), ()),
                )
                self.caveats.append(
                    Caveat(
                        kind="skipped",
                        message=f"{n} record(s) skipped: {reason}",
                        provenance=prov,
                        details={"reason": reason, "count": n},
                    )
                )
        for (kind, file), n in sorted(self._per_kind.items()):
            if n > CAVEATS_PER_KIND:
                prov = Provenance(source="file", parser=PARSER, artifact=file)
                self.caveats.append(
                    Caveat(
                        kind=kind,
                        message=f"{n} records of kind {kind!r} in this file; "
                        f"the first {CAVEATS_PER_KIND} are listed individually",
                        provenance=prov,
                        details={"count": n, "listed": CAVEATS_PER_KIND},
                    )
                )
