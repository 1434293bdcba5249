"""``podmortem image``: analyse, diff and extract container images (archives, OCI layouts,
or images held by Docker, Podman or containerd)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from podmortem.case import ArtifactRecord, Case
from podmortem.case.paths import safe_component
from podmortem.errors import InputError
from podmortem.escape import for_terminal

if TYPE_CHECKING:  # the image readers import YAML catalogues: load them only when used
    from podmortem.image.limits import Limits

app = typer.Typer(
    help="Container image analysis: layers, whiteouts, hidden content, indicators, packages,"
    " SBOM, YARA.",
    no_args_is_help=True,
)
console = Console(highlight=False, soft_wrap=True)

IMAGE_HELP = (
    "A docker save archive (any layout), an OCI layout directory or oci-archive tar, or"
    " docker://NAME, podman://NAME, containerd://NAME."
)

TagOpt = Annotated[
    str | None, typer.Option("--tag", help="Which image of a multi-image archive or index.")
]
PlatformOpt = Annotated[
    str | None,
    typer.Option("--platform", help="os/arch or os/arch/variant in a multi-platform index."),
]
CaseOpt = Annotated[
    Path | None, typer.Option("--case", help="Case folder: inputs and outputs become artifacts.")
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="image")


def _free_name(case: Case, rel: str) -> str:
    names = {a.path for a in case.artifacts}
    candidate, n = rel, 1
    while "artifacts/" + candidate in names:
        n += 1
        candidate = f"{rel}.{n}"
    return candidate


def _sha256_file(src: Path) -> str:
    digest = hashlib.sha256()
    with open(src, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _add_once(case: Case, rel: str, src: Path, spec: str) -> ArtifactRecord:
    """Artifacts are write-once: the same file analysed again reuses its artifact; a
    different file under the same name gets a numbered name."""
    digest: str | None = None  # computed only if a same-named artifact exists
    size = src.stat().st_size
    candidate = rel
    for n in range(2, 1000):
        try:
            rec = case.get(candidate)
        except KeyError:
            # an image can carry secrets (ENV, deleted files): its copy is sensitive
            return case.add_file(
                candidate, src, source="file", command=f"image analyze {spec}", sensitive=True
            )
        if rec.size == size:
            digest = digest or _sha256_file(src)
            if rec.sha256 == digest:
                return rec
        candidate = f"{rel}.{n}"
    raise InputError(f"too many different files named {rel} in the case")


@contextlib.contextmanager
def _materialise(spec: str, case: Case | None, role: str) -> Iterator[tuple[Path, str]]:
    """Give back a local path for ``spec``: a runtime reference is exported (into the case
    when there is one, else a temporary file removed afterwards); a path with --case is
    copied into the case first, so what is analysed is what is preserved."""
    from podmortem.image.readers.runtime import Endpoints, export, parse_ref

    ref = parse_ref(spec)
    if ref is None:
        path = Path(spec)
        if not path.exists():
            raise InputError(
                f"{spec} does not exist (and is not docker://, podman://, containerd://)"
            )
        if case is None:
            yield path, spec
            return
        name = safe_component(path.name or "image")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
            rels = ["/".join(safe_component(x) for x in f.relative_to(path).parts) for f in files]
            # a layout directory is copied whole under one name: reuse a copy that holds
            # exactly these files, else take the next free name (never mix two layouts)
            known = {a.path: a.sha256 for a in case.artifacts}
            seen_before = any(k.startswith(f"artifacts/image/{role}/{name}") for k in known)
            digests = [_sha256_file(f) if seen_before else "" for f in files]
            for n in range(1, 1000):
                folder = name if n == 1 else f"{name}.{n}"
                prefix = f"artifacts/image/{role}/{folder}/"
                same = all(known.get(prefix + r) == d for r, d in zip(rels, digests, strict=True))
                if same or not any(k.startswith(prefix) for k in known):
                    break
            with case.batch():
                for f, rel, d in zip(files, rels, digests, strict=True):
                    if known.get(prefix + rel) != d:
                        case.add_file(
                            f"image/{role}/{folder}/{rel}",
                            f,
                            source="file",
                            command=f"image analyze {spec}",
                            sensitive=True,
                        )
            yield case.root / prefix.rstrip("/"), spec
            return
        rec = _add_once(case, f"image/{role}/{name}", path, spec)
        yield case.root / rec.path, spec
        return
    endpoints = Endpoints.from_env()
    if case is not None:
        rel = _free_name(case, f"image/{role}/{safe_component(ref.scheme + '_' + ref.name)}.tar")
        with case.artifact(rel, source="api", command=f"export {ref.display}", sensitive=True) as w:
            _n, command = export(ref, w, endpoints)
            w.extra = {"reference": ref.display, "exported_by": command}
        yield case.root / case.get(rel).path, ref.display
        return
    with tempfile.TemporaryDirectory(prefix="podmortem-image-") as tmp:
        out = Path(tmp) / "image.tar"
        with open(out, "wb") as fh:
            export(ref, fh, endpoints)
        yield out, ref.display


def _limits(
    scan_bytes: int | None, max_members: int | None, time_budget: float | None, verify_all: bool
) -> Limits:
    from podmortem.image.limits import DEFAULT_LIMITS

    lim = DEFAULT_LIMITS
    if scan_bytes is not None:
        lim = replace(lim, scan_head_bytes=scan_bytes)
    if max_members is not None:
        lim = replace(lim, max_members=max_members)
    if time_budget is not None:
        lim = replace(lim, time_budget_s=time_budget)
    if verify_all:
        lim = replace(lim, verify_all_digests=True)
    return lim


def _write_json(out: Path, data: Any) -> None:
    out.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


@app.command("analyze")
def analyze_cmd(  # noqa: PLR0917 - one parameter per CLI option
    image: Annotated[str, typer.Argument(help=IMAGE_HELP)],
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="The base image: layers shared with it (by ChainID) are attributed to it.",
        ),
    ] = None,
    case_dir: CaseOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    yara_dir: Annotated[
        Path | None,
        typer.Option("--yara", help="Folder of YARA rules to run over every file of every layer."),
    ] = None,
    sbom_out: Annotated[
        Path | None, typer.Option("--sbom", help="Write a CycloneDX JSON SBOM here.")
    ] = None,
    tag: TagOpt = None,
    platform: PlatformOpt = None,
    base_tag: Annotated[str | None, typer.Option("--base-tag", help="--tag for the base.")] = None,
    scan_bytes: Annotated[
        int | None, typer.Option("--scan-bytes", help="Bytes of each file read for indicators.")
    ] = None,
    max_members: Annotated[
        int | None, typer.Option("--max-members", help="Most layer members analysed.")
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            help="Seconds before layers stop being analysed (they are still hashed).",
        ),
    ] = None,
    verify_all: Annotated[
        bool,
        typer.Option(
            "--verify-all-digests",
            help="md5/sha1 every file, not only executables, for package checksum checks.",
        ),
    ] = False,
) -> None:
    """Analyse one image: verify digests, merge layers with whiteouts, report what each layer
    added, changed and hid, packages, integrity and indicators."""
    from podmortem.image.analysis import analyze, base_diff_ids
    from podmortem.image.yara_scan import YaraScanner

    limits = _limits(scan_bytes, max_members, time_budget, verify_all)
    case = Case.open(case_dir) if case_dir else None
    yara = YaraScanner(yara_dir) if yara_dir else None
    with contextlib.ExitStack() as stack:
        base_ids: list[str] | None = None
        base_source: str | None = None
        if base:
            base_path, base_source = stack.enter_context(_materialise(base, case, "base"))
            base_ids = base_diff_ids(base_path, tag=base_tag, platform=None, limits=limits)
        path, source = stack.enter_context(_materialise(image, case, "analyzed"))
        a = analyze(
            path,
            source=source,
            tag=tag,
            platform=platform,
            base=base_ids,
            base_source=base_source,
            yara=yara,
            limits=limits,
        )
    from podmortem.image.report import report_dict

    report = report_dict(a)
    if json_out:
        _write_json(json_out, report)
    sbom_text = None
    if sbom_out or case:
        from podmortem.image.sbom import build_sbom

        sbom_text = build_sbom(a)
        if sbom_out:
            sbom_out.write_text(sbom_text + "\n")
    if case is not None:
        from podmortem.image import index

        stem = safe_component(a.image.config_digest.replace("sha256:", "")[:16])
        rep = case.add_bytes(
            _free_name(case, f"image/reports/{stem}.report.json"),
            json.dumps(report, indent=2, default=str).encode() + b"\n",
            source="analysis",
            command=f"image analyze {image}",
        )
        if sbom_text is not None:
            case.add_bytes(
                _free_name(case, f"image/reports/{stem}.cdx.json"),
                sbom_text.encode() + b"\n",
                source="analysis",
                command=f"image analyze {image} (SBOM)",
            )
        n = index.store(case, a)
        case.log_action(
            "analysis_run",
            {
                "analysis": "image",
                "image": source,
                "config_digest": a.image.config_digest,
                "report": rep.path,
                "report_sha256": rep.sha256,
                "findings": n,
                "caveats": len(a.caveats),
            },
        )
    _print_analysis(report)


def _print_analysis(report: dict[str, Any]) -> None:
    """One line per layer and per finding: readable in narrow terminals and in logs."""
    img = report["image"]
    console.print(
        f"image {for_terminal(', '.join(img['tags']) or img['config_digest'])}"
        f" ({for_terminal(img['layout'])}, {for_terminal(img['platform'])})"
    )
    console.print(f"config {img['config_digest']}  manifest {img['digest'] or '-'}")
    if img.get("base"):
        console.print(
            f"base {for_terminal(img['base']['source'])}: {img['base']['shared_layers']}"
            " shared layers"
        )
    for x in report["layers"]:
        console.print(
            f"layer {x['index']}  {(x['diff_id'] or '?')[:19]}  +{len(x['added'])}"
            f" ~{len(x['modified'])} -{len(x['deleted'])}  "
            f"{for_terminal(x['created_by'], limit=100)}"
        )
    console.print(f"findings: {len(report['findings'])}")
    for f in report["findings"]:
        where = f["path"] or f["config_key"] or ""
        layer = "" if f["layer_index"] is None else f" layer {f['layer_index']}"
        hidden = "" if f["hidden_by_layer"] is None else f" HIDDEN by layer {f['hidden_by_layer']}"
        console.print(
            f"  {f['severity'].upper():<8} {f['rule_id']}  {for_terminal(where, limit=200)}"
            f"{layer}{hidden}\n           {for_terminal(f['summary'], limit=300)}"
        )
    dbs = ", ".join(report["package_databases"]) or "no package database"
    console.print(f"{len(report['packages'])} packages ({dbs}); {len(report['caveats'])} caveats")
    for c in report["caveats"][:20]:
        console.print(f"  caveat {for_terminal(c['kind'])}: {for_terminal(c['message'])}")


@app.command("diff")
def diff_cmd(
    image_a: Annotated[str, typer.Argument(help=IMAGE_HELP)],
    image_b: Annotated[str, typer.Argument(help="The image to compare with.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the diff here.")] = None,
    case_dir: CaseOpt = None,
    tag: TagOpt = None,
) -> None:
    """Content diff of two merged images: by path, type, mode, owner and sha256."""
    from podmortem.image.analysis import analyze
    from podmortem.image.diff import diff_analyses

    case = Case.open(case_dir) if case_dir else None
    with contextlib.ExitStack() as stack:
        pa, sa = stack.enter_context(_materialise(image_a, case, "a"))
        pb, sb = stack.enter_context(_materialise(image_b, case, "b"))
        a = analyze(pa, source=sa, tag=tag)
        b = analyze(pb, source=sb, tag=tag)
    d = diff_analyses(a, b)
    if json_out:
        _write_json(json_out, d)
    if case is not None:
        rec = case.add_bytes(
            _free_name(
                case,
                f"image/diffs/{safe_component(a.image.config_digest[7:23])}-"
                f"{safe_component(b.image.config_digest[7:23])}.json",
            ),
            json.dumps(d, indent=2).encode() + b"\n",
            source="analysis",
            command=f"image diff {image_a} {image_b}",
        )
        case.log_action(
            "analysis_run",
            {"analysis": "image-diff", "a": sa, "b": sb, "report": rec.path, **d["summary"]},
        )
    console.print(
        f"{d['summary']['added']} added, {d['summary']['removed']} removed,"
        f" {d['summary']['changed']} changed; {d['shared_base_layers']} shared"
        " base layers"
    )
    for kind, sign in (("added", "+"), ("removed", "-")):
        for x in d[kind][:200]:
            console.print(f"{sign} {for_terminal(x['path'])}  {x['kind']} {x['sha256'] or ''}")
    for x in d["changed"][:200]:
        console.print(f"~ {for_terminal(x['path'])}  {','.join(x['changes'])}")


@app.command("extract")
def extract_cmd(  # noqa: PLR0917 - one parameter per CLI option
    image: Annotated[str, typer.Argument(help=IMAGE_HELP)],
    path: Annotated[str, typer.Argument(help="Absolute path inside the image.")],
    case_dir: Annotated[Path, typer.Option("--case", help="Case folder to write the file into.")],
    layer: Annotated[
        int | None,
        typer.Option(
            "--layer",
            help="Take the file as this layer wrote it (also finds content later layers hid).",
        ),
    ] = None,
    tag: TagOpt = None,
    platform: PlatformOpt = None,
) -> None:
    """Write one file from an image into the case, with its hash."""
    from podmortem.image.analysis import analyze
    from podmortem.image.extract import extract_file

    case = Case.open(case_dir)
    with _materialise(image, case, "analyzed") as (p, source):
        a = analyze(p, source=source, tag=tag, platform=platform)
        x = extract_file(p, a, path, case, layer=layer, tag=tag, platform=platform)
    case.log_action(
        "analysis_run",
        {
            "analysis": "image-extract",
            "image": source,
            "path": x.entry.path,
            "layer_index": x.entry.layer,
            "artifact": x.record.path,
            "sha256": x.record.sha256,
        },
    )
    status = "" if x.record.error is None else f"  ERROR {for_terminal(x.record.error)}"
    console.print(
        f"{x.record.sha256}  {for_terminal(x.record.path)}  (layer {x.entry.layer},"
        f" {x.record.size} bytes){status}"
    )
