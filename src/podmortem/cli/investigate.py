"""``podmortem investigate``: acquire, analyse, correlate and report in one command."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from podmortem.cli.options import (
    CaseId,
    CriEndpoint,
    DebugImage,
    DockerHost,
    Examiner,
    Kubeconfig,
    KubeContext,
    NodeAgentImage,
    NodeAgentNamespace,
    PodmanHost,
    open_case,
)
from podmortem.cli.options import endpoints as runtime_endpoints
from podmortem.escape import for_terminal

console = Console(highlight=False)


def register(root: typer.Typer) -> None:
    root.command("investigate")(investigate)


def investigate(  # noqa: PLR0917 - typer maps parameters to options
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Live targets: docker://NAME|ID, podman://NAME|ID, cri://ID, "
            "k8s://NAMESPACE/POD\\[/CONTAINER].",
            show_default=False,
        ),
    ] = None,
    case_dir: Annotated[
        Path, typer.Option("--case", help="Case folder (new, empty or a case).")
    ] = Path("case"),
    audit: Annotated[
        list[Path] | None, typer.Option("--audit", help="Audit log file or folder (repeatable).")
    ] = None,
    image: Annotated[
        list[str] | None,
        typer.Option("--image", help="Image archive, OCI layout or docker://IMAGE (repeatable)."),
    ] = None,
    base: Annotated[
        str | None, typer.Option("--base", help="Base image, to tell its layers from the rest.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the HTML report here too.")
    ] = None,
    budget: Annotated[
        float, typer.Option("--budget", min=1.0, help="Seconds for acquisition and analysis.")
    ] = 300.0,
    memory: Annotated[bool, typer.Option("--memory", help="Dump process memory.")] = False,
    no_exec: Annotated[
        bool, typer.Option("--no-exec", help="Never exec into a target (no second view).")
    ] = False,
    case_id: CaseId = None,
    examiner: Examiner = "unknown",
    docker_host: DockerHost = None,
    podman_host: PodmanHost = None,
    cri_endpoint: CriEndpoint = None,
    kube_context: KubeContext = None,
    kubeconfig: Kubeconfig = None,
    debug_image: DebugImage = None,
    node_agent: NodeAgentImage = None,
    node_agent_namespace: NodeAgentNamespace = "podmortem",
) -> None:
    """From a suspect workload to one case and one report: live targets are acquired first
    (volatile evidence before anything else), then the image each runs and the images given
    are analysed, then the audit logs; everything is correlated into one timeline and
    written as a self-contained HTML report (plus Markdown and JSON in the case). Opens
    nothing: prints where the report is."""
    from podmortem import report as report_mod
    from podmortem.cli.report import print_summary
    from podmortem.errors import InputError
    from podmortem.investigate import Plan
    from podmortem.investigate import investigate as run

    if not targets and not audit and not image:
        raise InputError("nothing to investigate: give live targets, --audit and/or --image")
    from podmortem.acquire.node_agent import AgentConfig

    case = open_case(case_dir, case_id, examiner)
    endpoints = runtime_endpoints(
        docker_host=docker_host,
        podman_host=podman_host,
        cri_endpoint=cri_endpoint,
        kube_context=kube_context,
        kubeconfig=kubeconfig,
        debug_image=debug_image,
        node_agent=AgentConfig(image=node_agent, namespace=node_agent_namespace)
        if node_agent
        else None,
    )
    plan = Plan(
        targets=list(targets or []),
        audit=list(audit or []),
        images=list(image or []),
        base=base,
        budget=budget,
        memory=memory,
        exec_allowed=not no_exec,
        endpoints=endpoints,
    )
    outcome = run(case, plan, progress=lambda msg: console.print(f"[dim]{for_terminal(msg)}[/]"))
    rep = report_mod.build(case)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # Rendered outside the case, then added as artifacts (hashed, in the custody log).
    with tempfile.TemporaryDirectory(prefix="podmortem-report-") as tmpdir:
        tmp = Path(tmpdir)
        files = report_mod.write(
            rep, html=tmp / "report.html", markdown=tmp / "report.md", json_path=tmp / "report.json"
        )
        with case.batch():
            for fmt, path in files.items():
                case.add_file(
                    f"reports/{stamp}/{path.name}",
                    path,
                    source="analysis",
                    command=f"podmortem investigate: {fmt} report",
                )
    html_path = case.root / "artifacts" / "reports" / stamp / "report.html"
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_bytes(html_path.read_bytes())
    print_summary(console, rep)
    for step in outcome.steps:
        if step["status"] != "done":
            console.print(
                f"[yellow]{for_terminal(step['step'])}: {step['status']}[/] "
                f"{for_terminal(step.get('error', ''))}"
            )
    console.print(f"report: {for_terminal(report or html_path)}")
    if report is not None:
        console.print(f"copy in the case: {for_terminal(html_path)}")
    console.print(f"case {for_terminal(case.root)}; custody head {case.custody_head}")
