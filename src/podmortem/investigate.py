"""``podmortem investigate``: from a suspect workload to one case and one report.

Order (RFC 3227, most volatile first): acquire the live targets, then analyse the image each
target runs (exported through its runtime) and the images given, then the audit logs, then
correlate and write the report. Each step is the owning capability's library function; this
module only sequences them, shares the time budget, and turns a step that cannot run into a
caveat in the case (a report is written whatever happens).

The budget: acquisition gets most of it (volatile state is what is lost by waiting); image
and audit analysis run with what is left; when nothing is left they are skipped with a
caveat naming what was not analysed, and can be run later on the same case.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from podmortem.case import index
from podmortem.case.paths import safe_component
from podmortem.case.store import Case
from podmortem.errors import InputError, PodmortemError
from podmortem.findings import Caveat, Provenance

ANALYSIS = "investigate"
ACQUIRE_SHARE = 0.6  # of the budget, when there are live targets
MIN_ACQUIRE_S = 10.0

Progress = Callable[[str], None]


@dataclass(slots=True)
class Plan:
    targets: list[str] = field(default_factory=list)  # docker://NAME, cri://ID, k8s://NS/POD...
    audit: list[Path] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # archive/OCI path or docker://IMAGE
    base: str | None = None
    budget: float = 300.0
    memory: bool = False
    exec_allowed: bool = True
    endpoints: Any = None  # podmortem.acquire.runtimes.Endpoints; None: the engines' defaults


@dataclass(slots=True)
class Outcome:
    steps: list[dict[str, Any]] = field(default_factory=list)
    caveats: list[Caveat] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "caveats": [c.to_dict() for c in self.caveats],
        }


class Budget:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.deadline = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())


def investigate(
    case: Case,
    plan: Plan,
    *,
    open_runtime: Callable[[Any], Any] | None = None,
    progress: Progress = lambda msg: None,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Run every step of ``plan`` into ``case``. ``open_runtime`` maps a parsed target to a
    runtime backend (defaults to :func:`podmortem.acquire.runtimes.open_runtime`)."""
    from podmortem.acquire.target import parse_target

    refs = [parse_target(t) for t in plan.targets]  # bad names fail before anything runs
    for p in plan.audit:
        if not p.exists():
            raise InputError(f"audit log {p} does not exist")
    budget = Budget(plan.budget, clock)
    out = Outcome()
    case.log_action(
        "investigation_started",
        {
            "targets": plan.targets,
            "audit": [str(p) for p in plan.audit],
            "images": plan.images,
            "base": plan.base,
            "budget_s": plan.budget,
        },
    )

    images = list(plan.images)
    if refs:
        doc = _step(
            out,
            "acquire",
            lambda: _acquire(
                case, refs, plan, budget, open_runtime=open_runtime, progress=progress
            ),
            progress,
        )
        if isinstance(doc, dict):
            images += _target_images(doc, images)
    base_ids: list[str] | None = None
    if plan.base:
        base_ids = _step(
            out, "base image", lambda: _base(case, plan.base or "", plan.endpoints), progress
        )
    for image in images:
        if budget.remaining() <= 0:
            _skip(out, f"image {image}", "the time budget ran out before the image analysis")
            continue
        _step(
            out,
            f"image {image}",
            functools.partial(_image, case, image, base_ids, budget, plan.endpoints),
            progress,
        )
    if plan.audit:
        if budget.remaining() <= 0:
            _skip(out, "audit", "the time budget ran out before the audit-log analysis")
        else:
            _step(out, "audit", lambda: _audit(case, plan.audit), progress)
    if out.caveats:
        index.store_findings(case, ANALYSIS, [], out.caveats)
    case.log_action("investigation_finished", {"steps": out.steps})
    return out


def _step(out: Outcome, name: str, fn: Callable[[], Any], progress: Progress) -> Any:
    progress(f"{name}: started")
    t0 = time.monotonic()
    try:
        result = fn()
    except (PodmortemError, OSError) as exc:
        # One step failing (an engine down, an unreadable image, a full disk) must not cost
        # the others; anything else is a bug and stops the run.
        message = exc.message if isinstance(exc, PodmortemError) else f"{type(exc).__name__}: {exc}"
        out.caveats.append(
            Caveat(
                "analysis-failed",
                f"{name}: {message}",
                Provenance("investigate", "podmortem.investigate"),
            )
        )
        out.steps.append(
            {
                "step": name,
                "status": "failed",
                "error": message,
                "seconds": round(time.monotonic() - t0, 3),
            }
        )
        progress(f"{name}: failed: {message}")
        return None
    out.steps.append({"step": name, "status": "done", "seconds": round(time.monotonic() - t0, 3)})
    progress(f"{name}: done")
    return result


def _skip(out: Outcome, name: str, why: str) -> None:
    out.caveats.append(
        Caveat(
            "budget-exhausted",
            f"{name} not analysed: {why}",
            Provenance("investigate", "podmortem.investigate"),
        )
    )
    out.steps.append({"step": name, "status": "skipped", "error": why})


# ------------------------------------------------------------------------- acquisition


def _acquire(
    case: Case,
    refs: Sequence[Any],
    plan: Plan,
    budget: Budget,
    *,
    open_runtime: Callable[[Any], Any] | None,
    progress: Progress,
) -> dict[str, Any]:
    from podmortem.acquire.collector import Options
    from podmortem.acquire.session import acquire

    opener = open_runtime or _default_opener(plan.endpoints)
    seconds = max(MIN_ACQUIRE_S, budget.remaining() * ACQUIRE_SHARE)
    options = Options(budget=seconds, memory=plan.memory, exec_allowed=plan.exec_allowed)
    doc = acquire(
        case,
        list(refs),
        opener,
        options,
        progress=lambda target, step: progress(f"acquire {target}: {step}"),
    )
    return doc


def _default_opener(endpoints: Any) -> Callable[[Any], Any]:
    from podmortem.acquire.runtimes import Endpoints, open_runtime

    where = endpoints or Endpoints()
    return lambda ref: open_runtime(ref, where)


def _target_images(doc: dict[str, Any], already: list[str]) -> list[str]:
    """The image each acquired target runs, as a runtime reference for export through the
    same runtime, by id (not by tag: a tag may have moved since the container started)."""
    out: list[str] = []
    for t in doc.get("targets") or []:
        ident = t.get("identity") or {}
        target = str(t.get("target") or "")
        scheme = {"docker": "docker", "podman": "podman", "cri": "containerd"}.get(
            target.partition("://")[0]
        )
        image_id = str(ident.get("image_digest") or ident.get("image") or "")
        if scheme and image_id:
            ref = f"{scheme}://{image_id}"
            if ref not in already and ref not in out:
                out.append(ref)
    return out


# ------------------------------------------------------------------------------ images


def _image_endpoints(endpoints: Any) -> Any:
    """The image exporter's endpoints, from the acquisition's when they were given (CRI
    nodes keep their images in containerd's ``k8s.io`` namespace)."""
    from podmortem.image.readers.runtime import Endpoints as ImageEndpoints

    env = ImageEndpoints.from_env()
    if endpoints is None:
        return env
    return ImageEndpoints(
        docker_host=endpoints.docker,
        podman_sock=endpoints.podman,
        containerd_address=str(endpoints.cri).removeprefix("unix://"),
        containerd_namespace="k8s.io",
    )


def _materialise(case: Case, image: str, endpoints: Any = None) -> tuple[Path, list[str]]:
    """The image as a file inside the case: an archive given on disk is copied in (and the
    copy analysed, so what was analysed is what was hashed); a runtime image is exported
    through the runtime (the image capability's exporter) straight into the case. Returns
    the path and the runtime's tags for the image (an export by id names none)."""
    from podmortem.image.readers.runtime import export, parse_ref

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    ref = parse_ref(image)
    if ref is None:
        src = Path(image)
        if src.is_dir():
            return src, []  # an OCI layout directory is analysed in place (read-only)
        if not src.is_file():
            raise InputError(
                f"image {image!r} is neither a file, an OCI layout nor docker://, podman://, "
                "containerd://"
            )
        rel = f"image/analyzed/{stamp}-{safe_component(src.name)}"
        case.add_file(rel, src, source="file", command=f"investigate --image {src}")
        return case.root / "artifacts" / rel, []
    where = _image_endpoints(endpoints)
    rel = f"image/analyzed/{stamp}-{safe_component(ref.scheme + '_' + ref.name)}.tar"
    with case.artifact(rel, source="api", command=f"export {image}", sensitive=True) as w:
        _n, command = export(ref, w, where)
        w.extra = {"reference": image, "exported_by": command}
    return case.root / "artifacts" / rel, _runtime_tags(ref, where)


def _runtime_tags(ref: Any, where: Any) -> list[str]:
    if ref.scheme not in ("docker", "podman"):
        return []
    try:
        import docker

        base = where.docker_host if ref.scheme == "docker" else where.podman_sock
        client = docker.DockerClient(base_url=base if "://" in base else f"unix://{base}")
        try:
            info: dict[str, Any] = client.api.inspect_image(ref.name)  # type: ignore[no-untyped-call]
            return [str(t) for t in info.get("RepoTags") or []]
        finally:
            client.close()
    except Exception:  # tags only help linking to pod specs; say nothing more
        return []


def _base(case: Case, base: str, endpoints: Any) -> list[str]:
    from podmortem.image.analysis import base_diff_ids
    from podmortem.image.limits import DEFAULT_LIMITS

    path, _ = _materialise(case, base, endpoints)
    return base_diff_ids(path, tag=None, platform=None, limits=DEFAULT_LIMITS)


def _image(
    case: Case, image: str, base_ids: list[str] | None, budget: Budget, endpoints: Any
) -> dict[str, Any]:
    from podmortem.image import index as image_index
    from podmortem.image.analysis import analyze
    from podmortem.image.limits import DEFAULT_LIMITS
    from podmortem.image.report import report_dict

    path, runtime_tags = _materialise(case, image, endpoints)
    limits = dataclasses.replace(DEFAULT_LIMITS, time_budget_s=max(1.0, budget.remaining()))
    result = analyze(path, source=image, base=base_ids, limits=limits)
    doc = report_dict(result)
    # Exported by id, the archive names no tag: the runtime's tags are how pod specs in the
    # audit log name this image.
    doc["image"]["runtime_tags"] = runtime_tags
    stem = safe_component(result.image.config_digest.replace("sha256:", "")[:16])
    rec = case.add_bytes(
        f"image/reports/{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{stem}.report.json",
        json.dumps(doc, indent=2, default=str).encode() + b"\n",
        source="analysis",
        command=f"image analyze {image} (podmortem investigate)",
    )
    n = image_index.store(case, result)
    case.log_action(
        "analysis_run",
        {
            "analysis": "image",
            "image": image,
            "config_digest": result.image.config_digest,
            "report": rec.path,
            "report_sha256": rec.sha256,
            "findings": n,
        },
    )
    return doc


# ------------------------------------------------------------------------------- audit


def _audit(case: Case, paths: list[Path]) -> dict[str, Any]:
    from podmortem.audit.analyze import analyze

    result = analyze([str(p) for p in paths], case=case)
    doc = result.to_dict()
    rel = f"analysis/audit-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}.json"
    case.add_bytes(
        rel,
        json.dumps(doc, indent=1, default=str).encode() + b"\n",
        source="analysis",
        command="audit analysis",
    )
    return doc
