"""Options that several commands share, declared once: where the container runtimes and the
Kubernetes API are (``acquire``, ``investigate``, ``watch``), which rules run (``audit
analyze``, ``audit hunt``, ``watch``) and how a new case is named.

Each is an ``Annotated`` type that a command uses as a parameter's type, so that the flag,
its environment variable and its help read the same in every command; :func:`endpoints`
turns the values into the :class:`~podmortem.acquire.runtimes.Endpoints` of a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the acquisition package is imported when a command runs, not at start-up
    from podmortem.acquire.node_agent import AgentConfig
    from podmortem.acquire.runtimes import Endpoints
    from podmortem.case import Case

_RUNTIMES = "Runtimes and Kubernetes"

DockerHost = Annotated[
    str | None,
    typer.Option(
        "--docker-host", envvar="DOCKER_HOST", help="Docker API.", rich_help_panel=_RUNTIMES
    ),
]
PodmanHost = Annotated[
    str | None,
    typer.Option(
        "--podman-host", envvar="PODMAN_HOST", help="Podman API socket.", rich_help_panel=_RUNTIMES
    ),
]
CriEndpoint = Annotated[
    str | None,
    typer.Option(
        "--cri-endpoint",
        envvar="CONTAINER_RUNTIME_ENDPOINT",
        help="CRI socket.",
        rich_help_panel=_RUNTIMES,
    ),
]
KubeContext = Annotated[
    str | None,
    typer.Option("--context", help="kubeconfig context.", rich_help_panel=_RUNTIMES),
]
Kubeconfig = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        envvar="KUBECONFIG",
        help="kubeconfig file (in a pod: the service account unless given).",
        rich_help_panel=_RUNTIMES,
    ),
]
DebugImage = Annotated[
    str | None,
    typer.Option(
        "--debug-image",
        help="Kubernetes: image of an ephemeral debug container for pods whose image has no ps "
        "(it stays in the pod spec).",
        rich_help_panel=_RUNTIMES,
    ),
]
NodeAgentImage = Annotated[
    str | None,
    typer.Option(
        "--node-agent",
        envvar="PODMORTEM_NODE_AGENT_IMAGE",
        help="Kubernetes: podmortem image of a node-agent Job that takes the node view on the "
        "pod's node when podmortem does not run there.",
        rich_help_panel=_RUNTIMES,
    ),
]
NodeAgentNamespace = Annotated[
    str,
    typer.Option(
        "--node-agent-namespace",
        help="Namespace of the node-agent Job.",
        rich_help_panel=_RUNTIMES,
    ),
]
SigmaDirs = Annotated[
    list[Path] | None,
    typer.Option("--sigma", help="Folder of Sigma rules (e.g. SigmaHQ's); repeatable."),
]
RulesDirs = Annotated[
    list[Path] | None,
    typer.Option("--rules", help="Folder of your own rules in podmortem's Sigma format."),
]
NoBuiltin = Annotated[bool, typer.Option("--no-builtin", help="Do not load the built-in ruleset.")]
CaseId = Annotated[str | None, typer.Option("--case-id", help="Case number for a new case.")]
Examiner = Annotated[str, typer.Option("--examiner", help="Examiner for a new case.")]


def endpoints(
    *,
    docker_host: str | None = None,
    podman_host: str | None = None,
    cri_endpoint: str | None = None,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
    debug_image: str | None = None,
    node_agent: AgentConfig | None = None,
) -> Endpoints:
    """The endpoints of a run; an option not given keeps the runtime's default socket. A local
    CRI socket means podmortem may be on a pod's node: Kubernetes targets try it for the node
    view (a container id it does not know is simply not on this node)."""
    from podmortem.acquire.runtimes import Endpoints

    d = Endpoints()
    cri = cri_endpoint or d.cri
    cri_path = cri.removeprefix("unix://")
    return Endpoints(
        docker=docker_host or d.docker,
        podman=podman_host or d.podman,
        cri=cri,
        kube_context=kube_context,
        kubeconfig=kubeconfig,
        debug_image=debug_image,
        node_cri=cri if cri_path.startswith("/") and Path(cri_path).exists() else None,
        node_agent=node_agent,
    )


def open_case(case_dir: Path, case_id: str | None, examiner: str) -> Case:
    """The case in ``case_dir``, or a new one there (named after the folder unless given)."""
    from podmortem.case import Case
    from podmortem.case.paths import MANIFEST

    if (case_dir / MANIFEST).exists():
        return Case.open(case_dir)
    return Case.init(case_dir, case_id=case_id or case_dir.name, examiner=examiner)
