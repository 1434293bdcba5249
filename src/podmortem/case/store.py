"""The case store: a folder that holds write-once artifacts, a manifest, a hash list and a
hash-chained custody log. Embedded, no server.

Layout::

    DIR/case.json          manifest: case metadata, artifact records, custody head
    DIR/custody.jsonl      append-only log of every action, each record chained to the last
    DIR/hash_list.sha256   coreutils format: ``cd DIR && sha256sum -c hash_list.sha256``
    DIR/artifacts/...      the evidence, written once
    DIR/index.duckdb       derived index (events, findings, timeline) for later capabilities
    DIR/.partial/          artifacts being written; anything left here was interrupted

Crash safety: an artifact is streamed into ``.partial/`` and renamed into place only when
complete; the custody log is the authority, written before the manifest, and the manifest
and hash list are replaced atomically. A ``kill -9`` at any moment therefore leaves either a
complete artifact recorded in the log, or an ``artifact_started`` record with no matching
``artifact_added`` that ``case verify`` names as incomplete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import podmortem
from podmortem.case import paths
from podmortem.case.custody import GENESIS, CustodyRecord, iso_utc, line_hash, read_lines, utc_now
from podmortem.errors import ArtifactExistsError, CaseError, CaseExistsError, NotACaseError

Source = Literal["node", "in-container", "api", "file", "analysis"]
SOURCES: frozenset[str] = frozenset({"node", "in-container", "api", "file", "analysis"})
FORMAT = "podmortem-case/1"
CHUNK = 1 << 20


@dataclass(slots=True)
class ArtifactRecord:
    """One artifact as the manifest and the custody log describe it."""

    name: str
    path: str  # relative to the case folder, e.g. ``artifacts/proc/ps.json``
    size: int
    sha256: str
    collected_at: str
    monotonic_offset_s: float
    source: str
    command: str | None = None
    exit_status: int | None = None
    error: str | None = None
    sensitive: bool = False
    tool_version: str = ""
    session: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class ArtifactWriter:
    """A write-once stream into the case; SHA-256 and size are computed as bytes pass.

    Callers may set ``exit_status`` and ``error`` before the ``with`` block ends (for
    example when the command that produced the bytes failed halfway)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._sha = hashlib.sha256()
        self.size = 0
        self.exit_status: int | None = None
        self.error: str | None = None
        self.extra: dict[str, Any] = {}

    def write(self, data: bytes) -> int:
        self._fh.write(data)
        self._sha.update(data)
        self.size += len(data)
        return len(data)

    def copy_from(self, src: IO[bytes], limit: int | None = None) -> int:
        """Stream ``src`` in; with ``limit`` stop after that many bytes (hostile input)."""
        total = 0
        while limit is None or total < limit:
            want = CHUNK if limit is None else min(CHUNK, limit - total)
            buf = src.read(want)
            if not buf:
                break
            self.write(buf)
            total += len(buf)
        return total

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class Case:
    """An open case folder. Thread-safe; writers in other processes are serialised with
    an ``flock`` on ``DIR/.lock``."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self._manifest = manifest
        self._lock = threading.RLock()
        self._session = uuid.uuid4().hex
        self._t0 = time.monotonic()
        self._session_logged = False
        self._batch_depth = 0
        self._log_size: int | None = None  # size of custody.jsonl as this process last saw it
        self._pending_torn: dict[str, Any] | None = None

    # ----------------------------------------------------------------- opening

    @classmethod
    def init(cls, root: Path | str, *, case_id: str, examiner: str, description: str = "") -> Case:
        """Create a new case. Refuses (touching nothing) if ``root`` already holds one or
        is a non-empty folder.

        A new folder is made whole or not at all: the case is written in a hidden sibling
        (``.NAME.creating-*``) and renamed into place once its first custody record and
        manifest are on disk. A process killed in between (the watch responder, SIGKILLed
        mid-burst) left a folder with a custody log and no manifest, which no later run
        could open or create again. A folder the examiner made beforehand is used in place."""
        root = Path(root)
        if (root / paths.MANIFEST).exists() or (root / paths.CUSTODY).exists():
            raise CaseExistsError(f"{root} already holds a case; refusing to touch it")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise CaseExistsError(f"{root} exists and is not an empty folder; refusing")
        if not case_id.strip() or not examiner.strip():
            raise CaseError("case id and examiner must not be empty")
        if root.exists():
            return cls._create(root, case_id, examiner, description)
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = root.parent / f".{root.name}.creating-{uuid.uuid4().hex[:12]}"
        try:
            case = cls._create(staging, case_id, examiner, description)
            try:
                # rename(2) refuses a non-empty target: a case made meanwhile stays as it is
                os.rename(staging, root)
            except OSError as exc:
                raise CaseExistsError(f"{root} was created meanwhile; refusing") from exc
        except BaseException:
            # ours alone: nothing in it is evidence yet (the case-created record at most)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        case.root = root
        fsync_dir(root.parent)
        return case

    @classmethod
    def _create(cls, root: Path, case_id: str, examiner: str, description: str) -> Case:
        root.mkdir(parents=True, exist_ok=True)
        (root / paths.ARTIFACT_DIR).mkdir()
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "case_id": case_id,
            "examiner": examiner,
            "description": description,
            "created_at": iso_utc(utc_now()),
            "tool_version": podmortem.__version__,
            "artifacts": [],
            "custody_head": GENESIS,
            "custody_records": 0,
        }
        case = cls(root, manifest)
        with case._locked():
            case._append(
                "case_created",
                {
                    "case_id": case_id,
                    "examiner": examiner,
                    "description": description,
                    "tool_version": podmortem.__version__,
                    "argv": list(sys.argv),
                },
            )
            case._write_manifest(sync=True)
        return case

    @classmethod
    def open(cls, root: Path | str) -> Case:
        root = Path(root)
        return cls(root, load_manifest(root))

    # ---------------------------------------------------------------- metadata

    @property
    def case_id(self) -> str:
        return str(self._manifest["case_id"])

    @property
    def examiner(self) -> str:
        return str(self._manifest["examiner"])

    @property
    def manifest(self) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(self._manifest))  # callers may not mutate
        return copy

    @property
    def artifacts(self) -> list[ArtifactRecord]:
        return [ArtifactRecord.from_dict(a) for a in self._manifest["artifacts"]]

    @property
    def index_path(self) -> Path:
        return self.root / paths.INDEX

    @property
    def custody_head(self) -> str:
        return str(self._manifest["custody_head"])

    def monotonic_offset(self) -> float:
        return round(time.monotonic() - self._t0, 6)

    # ----------------------------------------------------------------- actions

    def log_action(self, action: str, details: Mapping[str, Any] | None = None) -> str:
        """Append a custody record (analysis run, containment step, ...); returns its hash."""
        with self._locked():
            head = self._append(action, dict(details or {}))
            if not self._batch_depth:
                self._write_manifest(sync=False)
            return head

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Defer manifest rewrites and fsyncs to the end of the block: acquisition writes
        hundreds of small artifacts in seconds. Crash safety is unchanged (the custody log is
        still written first); only durability against power loss waits for the end."""
        with self._lock:
            self._batch_depth += 1
        try:
            yield
        finally:
            with self._locked():
                self._batch_depth -= 1
                if not self._batch_depth:
                    self._write_manifest(sync=True)

    @contextlib.contextmanager
    def artifact(
        self,
        path: str,
        *,
        source: Source,
        name: str | None = None,
        command: str | None = None,
        sensitive: bool = False,
    ) -> Iterator[ArtifactWriter]:
        """Stream a new artifact into ``artifacts/<path>``.

        If the block raises, what was written is still committed with the error recorded
        (a partial capture is evidence too) and the exception propagates."""
        rel = paths.ARTIFACT_DIR + "/" + paths.check_artifact_path(path)
        if source not in SOURCES:
            raise CaseError(f"unknown artifact source {source!r}")
        name = name or path
        final = self.root / rel
        with self._locked():
            if final.exists() or any(a["path"] == rel for a in self._manifest["artifacts"]):
                raise ArtifactExistsError(
                    f"artifact {rel} already exists; artifacts are write-once"
                )
            partial_name = uuid.uuid4().hex + ".part"
            self._append(
                "artifact_started",
                {"name": name, "path": rel, "partial": partial_name, "session": self._session},
            )
        partial_dir = self.root / paths.PARTIAL_DIR
        partial_dir.mkdir(exist_ok=True)
        tmp = partial_dir / partial_name
        collected_at = iso_utc(utc_now())
        offset = self.monotonic_offset()
        failure: BaseException | None = None
        with open(tmp, "xb") as fh:
            writer = ArtifactWriter(fh)
            try:
                yield writer
            except BaseException as exc:
                failure = exc
                if writer.error is None:
                    writer.error = f"{type(exc).__name__}: {exc}"[:2000]
            fh.flush()
            if not self._batch_depth:
                os.fsync(fh.fileno())
        if isinstance(failure, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise failure  # leave it incomplete: the user stopped us mid-write
        record = ArtifactRecord(
            name=name,
            path=rel,
            size=writer.size,
            sha256=writer.sha256,
            collected_at=collected_at,
            monotonic_offset_s=offset,
            source=source,
            command=command,
            exit_status=writer.exit_status,
            error=writer.error,
            sensitive=sensitive,
            tool_version=podmortem.__version__,
            session=self._session,
            extra=writer.extra,
        )
        with self._locked():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            self._append("artifact_added", record.to_dict())
            self._manifest["artifacts"].append(record.to_dict())
            if not self._batch_depth:
                self._write_manifest(sync=True)
        if failure is not None:
            raise failure

    def add_bytes(self, path: str, data: bytes, *, source: Source, **meta: Any) -> ArtifactRecord:
        with self.artifact(path, source=source, **meta) as w:
            w.write(data)
        return self.get(path)

    def add_file(
        self, path: str, src: Path | str, *, source: Source = "file", **meta: Any
    ) -> ArtifactRecord:
        with open(src, "rb") as fh, self.artifact(path, source=source, **meta) as w:
            w.copy_from(fh)
        return self.get(path)

    def get(self, path: str) -> ArtifactRecord:
        rel = path if path.startswith(paths.ARTIFACT_DIR + "/") else paths.ARTIFACT_DIR + "/" + path
        for a in reversed(self._manifest["artifacts"]):
            if a["path"] == rel:
                return ArtifactRecord.from_dict(a)
        raise KeyError(path)

    # --------------------------------------------------------------- internals

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self.root / paths.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _append(self, action: str, details: dict[str, Any]) -> str:
        """Append one record to the custody log. Caller holds the lock."""
        self._sync_head()
        if not self._session_logged and action != "case_created":
            self._session_logged = True
            self._append_raw(
                "session_started",
                {
                    "session": self._session,
                    "tool_version": podmortem.__version__,
                    "argv": list(sys.argv),
                    "pid": os.getpid(),
                    "monotonic": round(time.monotonic(), 6),
                },
            )
        self._session_logged = True
        if self._pending_torn is not None:
            torn, self._pending_torn = self._pending_torn, None
            self._append_raw("torn_record_discarded", torn)
        return self._append_raw(action, details)

    def _append_raw(self, action: str, details: dict[str, Any]) -> str:
        rec = CustodyRecord(
            seq=int(self._manifest["custody_records"]),
            time=iso_utc(utc_now()),
            action=action,
            details=details,
            prev=str(self._manifest["custody_head"]),
        )
        line = rec.to_line()
        with open(self.root / paths.CUSTODY, "ab") as fh:
            fh.write(line + b"\n")
            fh.flush()
            if not self._batch_depth:
                os.fsync(fh.fileno())
            self._log_size = fh.tell()
        head = line_hash(line)
        self._manifest["custody_head"] = head
        self._manifest["custody_records"] = rec.seq + 1
        return head

    def _sync_head(self) -> None:
        """Another process may have appended since we loaded the manifest: continue the
        chain from the log's real last line, and pick up artifacts it recorded."""
        log = self.root / paths.CUSTODY
        try:
            size = log.stat().st_size
        except FileNotFoundError:
            return
        if size == self._log_size:
            return
        data = log.read_bytes()
        if data and not data.endswith(b"\n"):
            # A writer was killed inside its append: the torn tail was never committed.
            # Cut it (logging what was cut) so the chain continues from the last record.
            keep = data.rfind(b"\n") + 1
            torn = data[keep:]
            os.truncate(log, keep)
            data = data[:keep]
            self._pending_torn = {"length": len(torn), "sha256": line_hash(torn)}
        lines = read_lines(data)
        self._log_size = len(data)
        last = lines[-1] if lines else None
        if last is None or last.record is None or last.hash == self._manifest["custody_head"]:
            return
        known = {a["path"] for a in self._manifest["artifacts"]}
        for ln in lines:
            rec = ln.record
            if rec and rec.action == "artifact_added" and rec.details.get("path") not in known:
                self._manifest["artifacts"].append(dict(rec.details))
        self._manifest["custody_head"] = last.hash
        self._manifest["custody_records"] = last.record.seq + 1

    def _write_manifest(self, *, sync: bool) -> None:
        # The hash list goes first: a crash between the two writes then leaves the manifest
        # behind the log (reported as such), never a current manifest with a stale list.
        lines = [f"{a['sha256']}  {a['path']}\n" for a in self._manifest["artifacts"]]
        _atomic_write(self.root / paths.HASH_LIST, "".join(lines).encode(), sync=sync)
        data = json.dumps(self._manifest, indent=2, sort_keys=True).encode() + b"\n"
        _atomic_write(self.root / paths.MANIFEST, data, sync=sync)


def fsync_dir(folder: Path) -> None:
    """Make a rename (or creation) of an entry of ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(target: Path, data: bytes, *, sync: bool) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "xb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, target)


def load_manifest(root: Path) -> dict[str, Any]:
    """Read and sanity-check ``case.json``; every failure is a one-line NotACaseError."""
    if not root.exists():
        raise NotACaseError(f"{root} does not exist")
    if not root.is_dir():
        raise NotACaseError(f"{root} is not a folder")
    mpath = root / paths.MANIFEST
    if not mpath.is_file():
        raise NotACaseError(f"{root} is not a podmortem case (no {paths.MANIFEST})")
    try:
        manifest = json.loads(mpath.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotACaseError(f"{mpath} is not valid JSON ({exc}); the manifest is damaged") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NotACaseError(f"{mpath} is not a {FORMAT} manifest")
    required = ("case_id", "examiner", "artifacts", "custody_head", "custody_records")
    missing = [k for k in required if k not in manifest]
    if missing or not isinstance(manifest["artifacts"], list):
        raise NotACaseError(f"{mpath} lacks {', '.join(missing) or 'an artifact list'}")
    return manifest
