"""CRI (the Kubernetes Container Runtime Interface) over gRPC, without ``crictl``.

``crictl`` is in no package registry we can reach, so podmortem speaks CRI itself: the
runtime's ``api.proto`` (Debian ships it in ``golang-github-kubernetes-cri-api-dev``; on a
node, any copy of ``k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`` does) is compiled with
``grpc_tools.protoc`` at first use into a cache directory keyed by its hash, and the generated
modules are imported under a private package name: nothing is added to ``sys.path``.

Only what acquisition needs is wrapped (:class:`CriClient`); the generated stubs stay
reachable through :attr:`CriClient.runtime`, :attr:`CriClient.images` and :attr:`CriClient.pb2`
for anything else (they are typed ``Any``: generated code carries no annotations).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from podmortem.errors import AcquisitionError, CapabilityUnavailable

#: Environment variable naming the ``api.proto`` to compile.
PROTO_ENV = "PODMORTEM_CRI_PROTO"
#: Where ``scripts/engines.sh install`` puts the proto on development and CI machines.
DEFAULT_PROTO_PATHS: tuple[Path, ...] = (Path("/var/lib/podmortem-ci/cri/api.proto"),)
#: Environment variable overriding the cache root (default ``$XDG_CACHE_HOME/podmortem``).
CACHE_ENV = "PODMORTEM_CACHE_DIR"

# The generated modules are named after this file name; a distinctive name keeps the entry in
# protobuf's process-wide descriptor pool from colliding with any other "api.proto".
_PROTO_FILE = "podmortem_cri_runtime_v1.proto"
_PB2 = "podmortem_cri_runtime_v1_pb2"
_PB2_GRPC = "podmortem_cri_runtime_v1_pb2_grpc"

# Debian's copy still carries gogoproto (Go code generation options). They change nothing on
# the wire, and gogo.proto is not shipped with grpc_tools, so they are removed before compiling.
_GOGO_IMPORT = re.compile(
    r'^\s*import\s+"github\.com/gogo/protobuf/gogoproto/gogo\.proto";\s*$', re.M
)
_GOGO_FILE_OPTION = re.compile(r"^\s*option\s+\(gogoproto\.[A-Za-z_]+\)\s*=\s*\w+;\s*$", re.M)
_GOGO_FIELD_OPTION = re.compile(r"\s*\[\s*\(gogoproto\.[^\]]*\]")
# grpc_tools generates `import X_pb2 as X__pb2` (a top-level import); we make it relative.
_GRPC_ABSOLUTE_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.M)


@dataclass(frozen=True)
class CriModules:
    """The compiled CRI API: message classes (``pb2``) and service stubs (``pb2_grpc``)."""

    pb2: Any
    pb2_grpc: Any
    proto_path: Path
    cache_dir: Path


def find_cri_proto(path: str | os.PathLike[str] | None = None) -> Path:
    """Locate ``api.proto``: the argument, else ``$PODMORTEM_CRI_PROTO``, else the CI default."""
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    elif os.environ.get(PROTO_ENV):
        candidates.append(Path(os.environ[PROTO_ENV]))
    else:
        candidates.extend(DEFAULT_PROTO_PATHS)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise CapabilityUnavailable(
        f"CRI api.proto not found (tried {tried}); set {PROTO_ENV} to a copy of "
        "k8s.io/cri-api/pkg/apis/runtime/v1/api.proto or run `scripts/engines.sh install`"
    )


def _cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "podmortem"


def _tool_versions() -> str:
    """Versions that shape the generated code; part of the cache key."""
    parts = []
    for dist in ("grpcio-tools", "protobuf"):
        try:
            parts.append(f"{dist}={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist}=?")
    return ";".join(parts)


def sanitize_proto(text: str) -> str:
    """Drop gogoproto import and options (Go-only code generation hints)."""
    text = _GOGO_IMPORT.sub("", text)
    text = _GOGO_FILE_OPTION.sub("", text)
    return _GOGO_FIELD_OPTION.sub("", text)


def compile_cri_proto(proto_path: Path, cache_root: Path | None = None) -> Path:
    """Compile ``proto_path`` once; return the cache directory holding the generated package.

    The directory name is the SHA-256 of the proto text plus the grpcio-tools and protobuf
    versions (generated code checks the runtime version it was made for). Compilation happens
    in a temporary sibling directory renamed into place, so concurrent test workers are safe.
    """
    try:
        importlib.import_module("grpc_tools")
    except ImportError as exc:
        raise CapabilityUnavailable(
            "grpcio-tools is not installed: it is needed to compile the CRI api.proto "
            "(pip install grpcio-tools)"
        ) from exc
    source = proto_path.read_bytes()
    digest = hashlib.sha256(source + b"\0" + _tool_versions().encode()).hexdigest()
    root = (cache_root or _cache_root()) / "cri"
    target = root / digest
    if (target / "__init__.py").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=root))
    try:
        (work / _PROTO_FILE).write_text(sanitize_proto(source.decode("utf-8")), encoding="utf-8")
        well_known = Path(importlib.import_module("grpc_tools").__file__ or "").parent / "_proto"
        # A subprocess rather than grpc_tools.protoc.main(): protoc's diagnostics go to its
        # stderr, which we capture for the error message.
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{work}",
                f"-I{well_known}",
                f"--python_out={work}",
                f"--grpc_python_out={work}",
                str(work / _PROTO_FILE),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise CapabilityUnavailable(
                f"compiling {proto_path} failed: {proc.stderr.strip() or proc.stdout.strip()}"
            )
        grpc_module = work / f"{_PB2_GRPC}.py"
        grpc_module.write_text(
            _GRPC_ABSOLUTE_IMPORT.sub(r"from . import \1 as \2", grpc_module.read_text()),
            encoding="utf-8",
        )
        (work / "__init__.py").write_text(
            f"# generated by podmortem from {proto_path} ({_tool_versions()})\n", encoding="utf-8"
        )
        try:
            work.rename(target)
        except OSError:
            # Another process won the race; its result is identical.
            if not (target / "__init__.py").is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


_loaded: dict[Path, CriModules] = {}
_load_lock = threading.Lock()


def load_cri_modules(
    proto: str | os.PathLike[str] | None = None, cache_root: Path | None = None
) -> CriModules:
    """Compile (if needed) and import the CRI API; the same proto is imported only once."""
    proto_path = find_cri_proto(proto).resolve()
    try:
        importlib.import_module("grpc")
    except ImportError as exc:
        raise CapabilityUnavailable("grpcio is not installed: pip install grpcio") from exc
    with _load_lock:
        package_dir = compile_cri_proto(proto_path, cache_root)
        if package_dir in _loaded:
            return _loaded[package_dir]
        # A private package name per compiled proto: registered in sys.modules only (needed so
        # the relative import inside the grpc module resolves), never on sys.path.
        package_name = f"_podmortem_cri_{package_dir.name[:16]}"
        package = _import_from(package_name, package_dir / "__init__.py", package_dir)
        pb2 = _import_from(f"{package_name}.{_PB2}", package_dir / f"{_PB2}.py")
        pb2_grpc = _import_from(f"{package_name}.{_PB2_GRPC}", package_dir / f"{_PB2_GRPC}.py")
        setattr(package, _PB2, pb2)
        setattr(package, _PB2_GRPC, pb2_grpc)
        modules = CriModules(
            pb2=pb2, pb2_grpc=pb2_grpc, proto_path=proto_path, cache_dir=package_dir
        )
        _loaded[package_dir] = modules
        return modules


def _import_from(name: str, path: Path, package_dir: Path | None = None) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name,
        path,
        submodule_search_locations=[str(package_dir)] if package_dir is not None else None,
    )
    if spec is None or spec.loader is None:
        raise CapabilityUnavailable(f"cannot import generated CRI module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


class CriError(AcquisitionError):
    """A CRI call failed; carries the gRPC status code name (e.g. ``NOT_FOUND``)."""

    def __init__(self, method: str, code: str, details: str) -> None:
        super().__init__(f"CRI {method} failed: {code}: {details}")
        self.method = method
        self.code = code
        self.details = details


@dataclass(frozen=True)
class CriVersion:
    version: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


@dataclass(frozen=True)
class CriContainer:
    """One entry of ``ListContainers``."""

    id: str
    pod_sandbox_id: str
    name: str
    attempt: int
    image: str
    image_ref: str
    state: str  # CONTAINER_CREATED / CONTAINER_RUNNING / CONTAINER_EXITED / CONTAINER_UNKNOWN
    created_at_ns: int
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CriContainerStatus:
    """``ContainerStatus`` with ``verbose=True``: the runtime's ``info`` map is kept raw."""

    id: str
    name: str
    state: str
    image: str
    image_ref: str
    created_at_ns: int
    started_at_ns: int  # 0 until started
    finished_at_ns: int  # 0 while running
    exit_code: int
    reason: str
    log_path: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    info: Mapping[str, str]

    @property
    def pid(self) -> int | None:
        """Host PID of the container's init process, from containerd's verbose info."""
        raw = self.info.get("info")
        if not raw:
            return None
        try:
            pid = json.loads(raw).get("pid")
        except (ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) and pid > 0 else None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


def normalize_endpoint(endpoint: str) -> str:
    """gRPC target for a CRI endpoint: ``unix:///path``, a bare socket path, or ``host:port``."""
    if endpoint.startswith("unix://"):
        return "unix:///" + endpoint.removeprefix("unix://").lstrip("/")
    if endpoint.startswith("/"):
        return f"unix://{endpoint}"
    return endpoint


class CriClient:
    """A small CRI client over a gRPC channel (normally the runtime's unix socket).

    >>> with CriClient("unix:///run/containerd/containerd.sock") as cri:  # doctest: +SKIP
    ...     cri.exec_sync(container_id, ["ps"], timeout=10).stdout
    """

    def __init__(
        self,
        endpoint: str,
        *,
        proto: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        modules: CriModules | None = None,
    ) -> None:
        self.modules = modules or load_cri_modules(proto)
        grpc: Any = importlib.import_module("grpc")
        self._grpc = grpc
        self.endpoint = normalize_endpoint(endpoint)
        self.timeout = timeout
        self._channel: Any = grpc.insecure_channel(self.endpoint)
        self.runtime: Any = self.modules.pb2_grpc.RuntimeServiceStub(self._channel)
        self.images: Any = self.modules.pb2_grpc.ImageServiceStub(self._channel)

    @property
    def pb2(self) -> Any:
        """The generated message module, for building requests."""
        return self.modules.pb2

    def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        """Call a RuntimeService (or, if absent there, ImageService) method; map gRPC errors."""
        stub = self.runtime if hasattr(self.runtime, method) else self.images
        try:
            return getattr(stub, method)(request, timeout=timeout or self.timeout)
        except self._grpc.RpcError as exc:
            code = exc.code()
            raise CriError(
                method, getattr(code, "name", str(code)), str(exc.details() or "")
            ) from exc

    def version(self) -> CriVersion:
        resp = self.call("Version", self.pb2.VersionRequest(version="v1"))
        return CriVersion(
            version=resp.version,
            runtime_name=resp.runtime_name,
            runtime_version=resp.runtime_version,
            runtime_api_version=resp.runtime_api_version,
        )

    def list_containers(self, *, pod_sandbox_id: str = "") -> list[CriContainer]:
        flt = self.pb2.ContainerFilter(pod_sandbox_id=pod_sandbox_id)
        resp = self.call("ListContainers", self.pb2.ListContainersRequest(filter=flt))
        states = self.pb2.ContainerState
        return [
            CriContainer(
                id=c.id,
                pod_sandbox_id=c.pod_sandbox_id,
                name=c.metadata.name,
                attempt=c.metadata.attempt,
                image=c.image.image,
                image_ref=c.image_ref,
                state=states.Name(c.state),
                created_at_ns=c.created_at,
                labels=dict(c.labels),
                annotations=dict(c.annotations),
            )
            for c in resp.containers
        ]

    def container_status(self, container_id: str, *, verbose: bool = True) -> CriContainerStatus:
        resp = self.call(
            "ContainerStatus",
            self.pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose),
        )
        s = resp.status
        return CriContainerStatus(
            id=s.id,
            name=s.metadata.name,
            state=self.pb2.ContainerState.Name(s.state),
            image=s.image.image,
            image_ref=s.image_ref,
            created_at_ns=s.created_at,
            started_at_ns=s.started_at,
            finished_at_ns=s.finished_at,
            exit_code=s.exit_code,
            reason=s.reason,
            log_path=s.log_path,
            labels=dict(s.labels),
            annotations=dict(s.annotations),
            info=dict(resp.info),
        )

    def exec_sync(self, container_id: str, cmd: Sequence[str], timeout: int = 30) -> ExecResult:
        """Run ``cmd`` in the container and wait (``timeout`` seconds, enforced by the runtime)."""
        resp = self.call(
            "ExecSync",
            self.pb2.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout),
            # The gRPC deadline must outlast the runtime's own timeout.
            timeout=max(self.timeout, timeout + 5.0),
        )
        return ExecResult(exit_code=resp.exit_code, stdout=resp.stdout, stderr=resp.stderr)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
