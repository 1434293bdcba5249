"""Exactly-once bookkeeping.

Two stores, written in this order for every chunk:

1. the watch database (DuckDB, one transaction): the chunk's rule hits kept for the
   correlation window, the findings (keyed by a finding id derived from the events, not from
   chunk boundaries) and the responses decided for them (keyed by finding id);
2. the responses are carried out, each marked done in the database when it is;
3. the state file: every source's position, written atomically (temporary file, fsync,
   rename, fsync of the folder).

After a kill -9 anywhere in between, the restart reads the state file, resumes each source at
its saved position and so reads the interrupted chunk again: hits already in the database are
recognised by their event identity and dropped, findings by id, and responses that were
decided but not finished are carried out first. Nothing is missed (the position never passes
an event that is not durable) and nothing is done twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from podmortem.case.store import fsync_dir
from podmortem.errors import InputError

STATE_VERSION = 1


class StateFile:
    """The sources' committed positions, as JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"version": STATE_VERSION, "positions": {}}
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            # Never silently start over: that would replay (or skip) a whole log.
            raise InputError(f"watch state file {self.path} is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("positions"), dict):
            raise InputError(f"watch state file {self.path} has no positions object")
        return doc

    def save(self, positions: dict[str, Any], **extra: Any) -> None:
        doc = {"version": STATE_VERSION, "positions": positions, **extra}
        data = json.dumps(doc, sort_keys=True, default=str).encode() + b"\n"
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
