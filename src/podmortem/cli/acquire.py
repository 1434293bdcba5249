"""``podmortem acquire TARGET... --case DIR``: live evidence from running containers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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
    case_id: Annotated[
        str | None, typer.Option("--case-id", help="Case number for a new case.")
    ] = None,
    examiner: Annotated[
        str, typer.Option("--examiner", help="Examiner for a new case.")
    ] = "unknown",
    docker_host: Annotated[
        str | None, typer.Option("--docker-host", envvar="DOCKER_HOST", help="Docker API.")
    ] = None,
    podman_host: Annotated[
        str | None, typer.Option("--podman-host", envvar="PODMAN_HOST", help="Podman API socket.")
    ] = None,
    cri_endpoint: Annotated[
        str | None,
        typer.Option("--cri-endpoint", envvar="CONTAINER_RUNTIME_ENDPOINT", help="CRI socket."),
    ] = None,
    kube_context: Annotated[
        str | None, typer.Option("--context", help="kubeconfig context.")
    ] = None,
    kubeconfig: Annotated[
        str | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", help="kubeconfig file.")
    ] = None,
    debug_image: Annotated[
        str | None,
        typer.Option(
            "--debug-image",
            help="Kubernetes: image of an ephemeral debug container for pods whose image has "
            "no ps (it stays in the pod spec).",
        ),
    ] = None,
    node_agent: Annotated[
        str | None,
        typer.Option(
            "--node-agent",
            envvar="PODMORTEM_NODE_AGENT_IMAGE",
            help="Kubernetes: podmortem image of a node-agent Job that takes the node view on "
            "the pod's node when podmortem does not run there.",
        ),
    ] = None,
    node_agent_namespace: Annotated[
        str, typer.Option("--node-agent-namespace", help="Namespace of the node-agent Job.")
    ] = "podmortem",
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
    from podmortem.acquire.runtimes import Endpoints, open_runtime
    from podmortem.acquire.session import acquire as run
    from podmortem.acquire.target import parse_target
    from podmortem.case import Case
    from podmortem.case.paths import MANIFEST
    from podmortem.errors import AcquisitionError, IntegrityError

    refs = [parse_target(t) for t in targets]
    if (case_dir / MANIFEST).exists():
        case = Case.open(case_dir)
    else:
        case = Case.init(case_dir, case_id=case_id or case_dir.name, examiner=examiner)
    d = Endpoints()
    cri = cri_endpoint or d.cri
    cri_path = cri.removeprefix("unix://")
    endpoints = Endpoints(
        docker=docker_host or d.docker,
        podman=podman_host or d.podman,
        cri=cri,
        kube_context=kube_context,
        kubeconfig=kubeconfig,
        debug_image=debug_image,
        # A local CRI socket means we may be on a pod's node: Kubernetes targets try it for
        # the node view (a container id it does not know is simply not on this node).
        node_cri=cri if cri_path.startswith("/") and Path(cri_path).exists() else None,
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
