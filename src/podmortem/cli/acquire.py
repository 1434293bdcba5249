"""``podmortem acquire TARGET... --case DIR``: live evidence from running containers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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

console = Console(highlight=False, stderr=True)


def register(root: typer.Typer) -> None:
    root.command("acquire")(acquire)


def acquire(  # noqa: PLR0917  (typer maps parameters to options)
    targets: Annotated[
        list[str],
        typer.Argument(
            help="docker://NAME|ID, podman://NAME|ID, cri://CONTAINER_ID, k8s://NAMESPACE/POD\\[/CONTAINER]",
            show_default=False,
        ),
    ],
    case_dir: Annotated[
        Path, typer.Option("--case", help="Case folder (created if new or empty).")
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the run as JSON ('-' for stdout).")
    ] = None,
    budget: Annotated[
        float,
        typer.Option("--budget", min=1.0, help="Seconds for the whole run; volatile state first."),
    ] = 30.0,
    memory: Annotated[
        bool, typer.Option("--memory", help="Dump each process's readable memory.")
    ] = False,
    checkpoint: Annotated[
        bool, typer.Option("--checkpoint", help="Take a CRIU checkpoint (leave-running).")
    ] = False,
    no_exec: Annotated[
        bool, typer.Option("--no-exec", help="Never exec into the target (no second view).")
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
    keep_node_agent: Annotated[
        bool, typer.Option("--keep-node-agent", help="Do not delete the node-agent Job.")
    ] = False,
    node_agent_cri_socket: Annotated[
        str | None,
        typer.Option(
            "--node-agent-cri-socket",
            help="The CRI socket on the node (default by runtime: containerd's, CRI-O's).",
        ),
    ] = None,
    node_agent_mount: Annotated[
        list[str] | None,
        typer.Option(
            "--node-agent-mount",
            help="Node folder the agent mounts read-only at the same path (repeatable; default "
            "by runtime: its state folder and /var/log/pods).",
        ),
    ] = None,
) -> None:
    """Acquire live evidence from running containers into a case: the node's view of their
    processes, sockets and files first, then memory (--memory), RAM-backed files, the writable
    layer, logs and runtime records. Never writes into, pauses or restarts a target."""
    from podmortem.acquire.caveats import NODE_AGENT_FAILED, NODE_AGENT_INTEGRITY
    from podmortem.acquire.collector import Options
    from podmortem.acquire.node_agent import AgentConfig
    from podmortem.acquire.runtimes import open_runtime
    from podmortem.acquire.session import acquire as run
    from podmortem.acquire.target import parse_target
    from podmortem.errors import AcquisitionError, IntegrityError

    refs = [parse_target(t) for t in targets]
    case = open_case(case_dir, case_id, examiner)
    endpoints = runtime_endpoints(
        docker_host=docker_host,
        podman_host=podman_host,
        cri_endpoint=cri_endpoint,
        kube_context=kube_context,
        kubeconfig=kubeconfig,
        debug_image=debug_image,
        node_agent=AgentConfig(
            image=node_agent,
            namespace=node_agent_namespace,
            keep=keep_node_agent,
            cri_socket=node_agent_cri_socket,
            host_paths=tuple(node_agent_mount) if node_agent_mount else None,
        )
        if node_agent
        else None,
    )
    options = Options(budget=budget, memory=memory, checkpoint=checkpoint, exec_allowed=not no_exec)
    lock = threading.Lock()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks = {str(r): bar.add_task(for_terminal(str(r)), total=None) for r in refs}

        def progress(target: str, step: str) -> None:
            with lock:
                tid = tasks.get(target)
                if tid is not None:
                    bar.update(tid, description=f"{for_terminal(target)}  {for_terminal(step)}")
                    if step in ("done", "partial", "failed"):
                        bar.update(tid, total=1, completed=1)

        doc = run(case, refs, lambda ref: open_runtime(ref, endpoints), options, progress=progress)
    text = json.dumps(doc, indent=1, default=str) + "\n"
    if json_out is not None:
        if str(json_out) == "-":
            typer.echo(text, nl=False)
        else:
            json_out.write_text(text)
    for f in doc["findings"]:
        console.print(
            f"[bold red]{for_terminal(f['severity']).upper()}[/] {for_terminal(f['title'])}:"
            f" {for_terminal(f['subject'])}"
        )
    for c in doc["caveats"]:
        console.print(f"[yellow]caveat[/] {for_terminal(c['kind'])}: {for_terminal(c['message'])}")
    state = "complete" if doc["complete"] else "PARTIAL"
    console.print(
        f"sealed case {for_terminal(case.case_id)} in {for_terminal(case_dir)}: "
        f"{len(doc['artifacts'])} artifacts, {len(doc['findings'])} findings, {state}, "
        f"{doc['elapsed_s']:.2f} s; custody head {case.custody_head}"
    )
    if not any(t["identity"] for t in doc["targets"]):
        raise AcquisitionError("no target could be acquired (see the caveats above)")
    # The case is sealed with what was captured; the exit status still says that the node
    # view asked for did not arrive (5) or arrived and failed verification (1).
    kinds = {c["kind"] for c in doc["caveats"]}
    if NODE_AGENT_INTEGRITY in kinds:
        raise IntegrityError(
            "the node agent's case failed verification and was not imported (see the caveats)"
        )
    if NODE_AGENT_FAILED in kinds:
        raise AcquisitionError("the node agent delivered no node view (see the caveats above)")
