"""``podmortem cloud``: investigation procedures for EKS, AKS and GKE.

``plan`` reads the live state and prints the ordered procedure; ``preserve`` and
``contain`` act only with ``--execute`` and record every API call in the case's custody
log; ``release`` undoes containment from that log; ``collect-logs`` pulls the control
plane's audit log into the case; ``readiness`` checks a cluster's forensic readiness.

Exit codes: 0 when every step ran, was already done, or was refused by the provider (the
refusal is recorded); 1 when a step failed; the usual podmortem codes otherwise.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from podmortem.cloud.model import KUBERNETES
from podmortem.errors import CapabilityUnavailable, InputError
from podmortem.escape import for_terminal

if TYPE_CHECKING:
    from podmortem.case import Case
    from podmortem.cloud.executor import Procedure, StepSet
    from podmortem.cloud.model import StepReport, Target

app = typer.Typer(help="Investigation procedures for EKS, AKS and GKE.", no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cloud")


class ProviderName(StrEnum):
    eks = "eks"
    aks = "aks"
    gke = "gke"


class PlatformName(StrEnum):
    """Where the procedures run: a provider, or ``kubernetes`` for any cluster through its
    API alone (the Kubernetes steps; no cloud API is called)."""

    eks = "eks"
    aks = "aks"
    gke = "gke"
    kubernetes = "kubernetes"


ProviderArg = Annotated[ProviderName, typer.Argument(help="eks, aks or gke.")]
PlatformArg = Annotated[
    PlatformName,
    typer.Argument(help="eks, aks or gke; kubernetes: the Kubernetes steps alone, no cloud API."),
]
ClusterOpt = Annotated[str, typer.Option("--cluster", help="Cluster name.")]
PodOpt = Annotated[str | None, typer.Option("--pod", help="NAMESPACE/POD to investigate.")]
NodeOpt = Annotated[str | None, typer.Option("--node", help="Kubernetes node name.")]
InstanceOpt = Annotated[
    str | None,
    typer.Option(
        "--instance-id",
        help="EC2 instance id, AKS <scale set>/<instance id>, or GCE instance name.",
    ),
]
CaseOpt = Annotated[Path | None, typer.Option("--case", help="Case folder (custody log).")]
ExecuteOpt = Annotated[
    bool, typer.Option("--execute", help="Really act. Without it nothing is changed.")
]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the result as JSON here.")]
# Provider configuration, named as each SDK's users know it.
RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region.")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="AWS profile.")]
SubscriptionOpt = Annotated[
    str | None, typer.Option("--subscription", envvar="AZURE_SUBSCRIPTION_ID", help="Azure sub.")
]
ResourceGroupOpt = Annotated[
    str | None, typer.Option("--resource-group", help="AKS cluster's resource group.")
]
ProjectOpt = Annotated[
    str | None, typer.Option("--project", envvar="GOOGLE_CLOUD_PROJECT", help="GCP project.")
]
LocationOpt = Annotated[str | None, typer.Option("--location", help="GKE region or zone.")]
ZoneOpt = Annotated[str | None, typer.Option("--zone", help="GCE zone of --instance-id.")]
KubeconfigOpt = Annotated[
    Path | None, typer.Option("--kubeconfig", help="kubeconfig (default: usual lookup).")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]
NoKubeOpt = Annotated[
    bool, typer.Option("--no-kube", help="Skip the Kubernetes-level steps (no API access).")
]


class Options:
    """Everything a command needs to build its clients, gathered from the flags."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def __getattr__(self, name: str) -> Any:  # unset options read as None
        return None


# The options several commands share, declared once: (parameter name, type, default).
Shared = tuple[tuple[str, Any, Any], ...]
SELECTORS: Shared = (
    ("pod", PodOpt, None),
    ("node", NodeOpt, None),
    ("instance_id", InstanceOpt, None),
)
PROVIDER_CONFIG: Shared = (
    ("region", RegionOpt, None),
    ("profile", ProfileOpt, None),
    ("subscription", SubscriptionOpt, None),
    ("resource_group", ResourceGroupOpt, None),
    ("project", ProjectOpt, None),
    ("location", LocationOpt, None),
)
TARGET_ACCESS: Shared = (
    ("zone", ZoneOpt, None),
    ("kubeconfig", KubeconfigOpt, None),
    ("context", ContextOpt, None),
    ("no_kube", NoKubeOpt, False),
)
Command = Callable[..., None]


def shared(*groups: Shared) -> Callable[[Command], Command]:
    """Give a command the shared options where its ``opts`` parameter stands; they reach it
    gathered in one :class:`Options`. Typer reads the command's signature, so the one built
    here is the command line (every option after ``opts`` is keyword-only: Typer passes
    them all by name)."""
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        for group in groups
        for name, ann, default in group
    ]
    names = [p.name for p in extra]

    def wrap(fn: Command) -> Command:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())
        at = [p.name for p in own].index("opts")
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own[at + 1 :]]

        @functools.wraps(fn)
        def command(**kw: Any) -> None:
            opts = Options(**{n: kw.pop(n) for n in names})
            fn(opts=opts, **kw)

        command.__signature__ = inspect.Signature([*own[:at], *extra, *rest])  # type: ignore[attr-defined]
        return command

    return wrap


# ---------------------------------------------------------------------------- building


def _kube(provider: PlatformName, opts: Options) -> StepSet | None:
    if opts.no_kube and provider.value == KUBERNETES:
        raise InputError("kubernetes: every step needs the Kubernetes API; drop --no-kube")
    if opts.no_kube:
        if opts.pod or opts.node:
            raise InputError("--pod and --node need the Kubernetes API; drop --no-kube")
        return None
    from podmortem.cloud.clients import kubernetes_steps

    try:
        return kubernetes_steps(opts.kubeconfig, opts.context)
    except CapabilityUnavailable:  # no kubeconfig, bad context: fatal only if it is needed
        if opts.pod or opts.node or provider.value == KUBERNETES:
            raise
        err.print("no Kubernetes API access: Kubernetes-level steps will be recorded as such")
        return None


def _cloud(provider: ProviderName | PlatformName, opts: Options) -> Any:
    """The provider's step set; None for ``kubernetes`` (no cloud)."""
    from dataclasses import fields

    from podmortem.cloud.clients import CloudConfig, provider_steps

    if provider.value == KUBERNETES:
        return None
    # The flags of PROVIDER_CONFIG are named as CloudConfig's fields.
    config = CloudConfig(**{f.name: getattr(opts, f.name) for f in fields(CloudConfig)})
    return provider_steps(ProviderName(provider.value).value, config)


def _target(provider: PlatformName, cluster: str, opts: Options) -> Target:
    from podmortem.cloud.model import Target

    chosen = [x for x in (opts.pod, opts.node, opts.instance_id) if x]
    if len(chosen) != 1:
        raise InputError("give exactly one of --pod NAMESPACE/POD, --node NODE, --instance-id ID")
    if opts.instance_id and provider.value == KUBERNETES:
        raise InputError("kubernetes acts on no machine: select --pod or --node")
    if opts.pod and (opts.pod.count("/") != 1 or not all(opts.pod.split("/"))):
        raise InputError("--pod is NAMESPACE/POD")
    t = Target(
        provider=provider.value,
        cluster=cluster,
        pod=opts.pod,
        node=opts.node,
        instance=opts.instance_id,
        zone=opts.zone,
    )
    if opts.location:
        t.extra["location"] = opts.location
    return t


def _open_case(path: Path | None, required: bool) -> Case | None:
    from podmortem.case import Case

    if path is None:
        if required:
            raise InputError("--execute needs --case: every change is recorded in its custody log")
        return None
    return Case.open(path)


def _procedure(provider: PlatformName, opts: Options, case: Case | None) -> Procedure:
    from podmortem.cloud.executor import Procedure

    return Procedure(_cloud(provider, opts), _kube(provider, opts), case=case)


# ----------------------------------------------------------------------------- output

_STYLE = {
    "would-change": "yellow",
    "changed": "green",
    "unchanged": "dim",
    "not-applicable": "dim",
    "not-permitted": "magenta",
    "failed": "red",
}


def _print_step(n: int, report: StepReport) -> None:
    status = str(report.outcome.status)
    style = _STYLE.get(status, "")
    console.print(
        f"{n:>2}. [{style}]{status:<14}[/] {report.phase:<8} {report.step_id:<34} "
        f"{for_terminal(report.outcome.reason)}"
    )
    writes = [c for c in report.calls if c.write]
    for c in writes:
        mark = "x" if c.error else "+"
        console.print(f"      {mark} {c.service}.{c.method}", markup=False)


def _print_texts(provider: str, ids: list[str]) -> None:
    from podmortem.cloud.playbook import procedure

    specs = {s.id: s for s in procedure(provider)}  # type: ignore[arg-type]
    for sid in ids:
        s = specs.get(sid)
        if s is None:
            continue
        console.print(f"\n[bold]{s.id}[/] ({s.phase}): {s.title}")
        console.print(f"  why:  {s.why}", markup=False)
        console.print(f"  risk: {s.risk}", markup=False)
        console.print(f"  undo: {s.undo}", markup=False)
        console.print(f"  api:  {', '.join(s.api_calls)}", markup=False)


def _finish(reports: list[StepReport], json_out: Path | None, target: Target, what: str) -> None:
    from podmortem.cloud.executor import summarize
    from podmortem.cloud.model import Status

    counts = summarize(reports)
    changed = counts.get(str(Status.CHANGED), 0)
    would = counts.get(str(Status.WOULD_CHANGE), 0)
    failed = counts.get(str(Status.FAILED), 0)
    if json_out:
        json_out.write_text(
            json.dumps(
                {
                    "target": target.to_dict(),
                    "what": what,
                    "summary": counts,
                    "steps": [r.to_dict() for r in reports],
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
    parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    if not changed and not would and not failed:
        console.print(f"{what}: nothing to do ({parts})")
    else:
        console.print(f"{what}: {parts}")
    if failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- commands


def _run(
    provider: PlatformName,
    cluster: str,
    opts: Options,
    phases: tuple[str, ...],
    *,
    execute: bool,
    case_path: Path | None,
    json_out: Path | None,
    what: str,
    explain: bool,
) -> None:
    selected = _target(provider, cluster, opts)  # bad selectors fail before any client
    case = _open_case(case_path, required=execute)
    proc = _procedure(provider, opts, case)
    target = proc.resolve(selected)
    console.print(
        f"{what} {provider.value} cluster {for_terminal(cluster)}: pod={for_terminal(target.pod)}"
        f" node={for_terminal(target.node)} instance={for_terminal(target.instance)}"
        + ("" if execute else "  [yellow](dry run: nothing will be changed)[/]")
    )
    counter = iter(range(1, 1000))
    reports = proc.run(
        target,
        phases,  # type: ignore[arg-type]
        execute=execute,
        on_step=lambda r: _print_step(next(counter), r),
    )
    if explain:
        _print_texts(provider.value, [r.step_id for r in reports])
    _finish(reports, json_out, target, what)


@app.command("plan")
@shared(SELECTORS, PROVIDER_CONFIG, TARGET_ACCESS)
def plan(
    provider: PlatformArg,
    cluster: ClusterOpt,
    *,
    opts: Options,
    case: CaseOpt = None,
    json_out: JsonOpt = None,
) -> None:
    """Read the live state and print the ordered procedure (why, risk, undo). Changes
    nothing; with --case the reads are recorded in its custody log."""
    _run(
        provider,
        cluster,
        opts,
        ("preserve", "contain"),
        execute=False,
        case_path=case,
        json_out=json_out,
        what="plan",
        explain=True,
    )


def _phase_command(phase: str, doc: str) -> None:
    @shared(SELECTORS, PROVIDER_CONFIG, TARGET_ACCESS)
    def command(
        provider: PlatformArg,
        cluster: ClusterOpt,
        *,
        opts: Options,
        case: CaseOpt = None,
        execute: ExecuteOpt = False,
        json_out: JsonOpt = None,
    ) -> None:
        _run(
            provider,
            cluster,
            opts,
            (phase,),
            execute=execute,
            case_path=case,
            json_out=json_out,
            what=phase,
            explain=False,
        )

    command.__doc__ = doc
    app.command(phase)(command)


_phase_command(
    "preserve",
    "Protect the node and its disks from deletion and snapshot them (only with --execute).",
)
_phase_command(
    "contain",
    "Detach, isolate and cordon; cloud network isolation (only with --execute).",
)


@app.command("release")
@shared(SELECTORS, PROVIDER_CONFIG, TARGET_ACCESS)
def release(
    provider: PlatformArg,
    cluster: ClusterOpt,
    case: Annotated[Path, typer.Option("--case", help="Case folder whose custody log to undo.")],
    *,
    opts: Options,
    execute: ExecuteOpt = False,
    include_preserve: Annotated[
        bool,
        typer.Option("--include-preserve", help="Also undo reversible preservation steps."),
    ] = False,
    json_out: JsonOpt = None,
) -> None:
    """Undo the containment this case recorded, newest first (only with --execute).
    Snapshots are never deleted."""
    selected = _target(provider, cluster, opts)
    c = _open_case(case, required=True)
    proc = _procedure(provider, opts, c)
    target = proc.resolve(selected)
    phases = ("contain", "preserve") if include_preserve else ("contain",)
    pending = proc.pending_releases(target, phases)  # type: ignore[arg-type]
    if not execute:
        for n, item in enumerate(pending, 1):
            console.print(f"{n:>2}. would undo {item['step']} (recorded {item['hash'][:12]})")
        console.print(f"release: {len(pending)} change(s) to undo (dry run)")
        return
    counter = iter(range(1, 1000))
    reports = proc.release(
        target,
        phases,  # type: ignore[arg-type]
        execute=True,
        on_step=lambda r: _print_step(next(counter), r),
    )
    _finish(reports, json_out, target, "release")


def _when(text: str, now: datetime) -> datetime:
    """ISO 8601 (naive means UTC) or a relative ``30m``/``6h``/``2d`` before now."""
    t = text.strip()
    units = {"m": 60, "h": 3600, "d": 86400}
    if t and t[-1] in units and t[:-1].isdigit():
        return now - timedelta(seconds=int(t[:-1]) * units[t[-1]])
    try:
        parsed = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"cannot read time {text!r}: use ISO 8601 or 30m/6h/2d") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("collect-logs")
@shared(PROVIDER_CONFIG)
def collect_logs(  # noqa: PLR0917 - typer maps parameters to options
    provider: ProviderArg,
    cluster: ClusterOpt,
    since: Annotated[str, typer.Option("--since", help="ISO 8601 time or 30m/6h/2d ago.")],
    case: Annotated[Path, typer.Option("--case", help="Case folder to collect into.")],
    until: Annotated[str | None, typer.Option("--until", help="End (default: now).")] = None,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=10000)] = 1000,
    workspace_id: Annotated[
        str | None, typer.Option("--workspace-id", help="AKS: Log Analytics workspace id.")
    ] = None,
    table: Annotated[
        str, typer.Option("--table", help="AKS: AKSAudit, AKSAuditAdmin or AzureDiagnostics.")
    ] = "AKSAudit",
    *,
    opts: Options,
) -> None:
    """Pull the control plane's audit log into the case, page by page, ready for
    ``podmortem audit analyze``."""
    from podmortem.case import Case
    from podmortem.cloud.calls import CallLog
    from podmortem.cloud.logs import Collected, collect

    now = datetime.now(UTC)
    start, end = _when(since, now), _when(until, now) if until else now
    if start >= end:
        raise InputError("--since must be before --until")
    c = Case.open(case)
    steps = _cloud(provider, opts)
    if provider is ProviderName.eks:
        source = "eks-filter-log-events"

        def pages(calls: CallLog) -> Any:
            return steps.audit_log_pages(calls, cluster, start, end, page_size)
    elif provider is ProviderName.gke:
        source = "gke-logentry-array"

        def pages(calls: CallLog) -> Any:
            return steps.audit_log_pages(calls, cluster, start, end, page_size)
    else:
        if not workspace_id:
            raise InputError("AKS needs --workspace-id (the cluster's Log Analytics workspace)")
        source = f"aks-log-analytics-{table}"
        from podmortem.cloud.model import Target

        target = Target(provider="aks", cluster=cluster)

        def pages(calls: CallLog) -> Any:
            steps.resolve(target, calls)
            return steps.audit_log_pages(
                calls,
                workspace_id=workspace_id,
                cluster_id=str(target.extra["cluster_id"]),
                table=table,
                since=start,
                until=end,
                page_size=page_size,
            )

    def progress(done: Collected) -> None:
        err.print(f"  page {done.pages}: {done.records} records, {done.bytes} bytes", end="\r")

    result = collect(
        c,
        provider=provider.value,
        cluster=cluster,
        source=source,
        pages=pages,
        since=start,
        until=end,
        progress=progress if sys.stderr.isatty() else None,
    )
    console.print(
        f"collected {result.records} audit records in {result.pages} page(s) "
        f"({result.bytes} bytes) into {for_terminal(case)}; "
        f"next: podmortem audit analyze {for_terminal(case)}/artifacts/cloud/{provider.value}"
    )


@app.command("readiness")
@shared(PROVIDER_CONFIG)
def readiness(
    provider: ProviderArg,
    cluster: ClusterOpt,
    json_out: JsonOpt = None,
    case: Annotated[
        Path | None, typer.Option("--case", help="Record the reads and results in this case.")
    ] = None,
    *,
    opts: Options,
) -> None:
    """Forensic readiness of a cluster: each check with its control mappings (CIS, SOC 2,
    HIPAA, PCI DSS) and the Terraform that fixes it. Exit 1 when a check fails."""
    doc = run_readiness(provider, cluster, opts, case)
    print_readiness(doc, console)
    if json_out:
        json_out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if doc["summary"]["fail"]:
        raise typer.Exit(1)


def run_readiness(
    provider: ProviderName, cluster: str, opts: Options, case_path: Path | None
) -> dict[str, Any]:
    from podmortem.cloud import readiness as rd
    from podmortem.cloud.calls import CallLog
    from podmortem.cloud.model import Target

    steps = _cloud(provider, opts)
    calls = CallLog(execute=False)
    target = Target(provider=provider.value, cluster=cluster)
    if opts.location:
        target.extra["location"] = opts.location
    if provider is ProviderName.eks:
        from podmortem.cloud.providers.aws import readiness_facts as eks_facts

        facts, notes = eks_facts(steps, calls, cluster)
    elif provider is ProviderName.aks:
        from podmortem.cloud.providers.azure import readiness_facts as aks_facts

        facts, notes = aks_facts(steps, calls, target)
    else:
        from podmortem.cloud.providers.gcp import readiness_facts as gke_facts

        facts, notes = gke_facts(steps, calls, target)
    doc = rd.report(provider.value, cluster, rd.evaluate(provider.value, facts, notes))
    if case_path is not None:
        _open_case(case_path, required=True).log_action(  # type: ignore[union-attr]
            "cloud_readiness", {**doc, "calls": [c.to_dict() for c in calls.calls]}
        )
    return doc


def print_readiness(doc: dict[str, Any], out: Console) -> None:
    """The human form; the docs' examples are this output."""
    s = doc["summary"]
    out.print(
        f"readiness {doc['provider']} cluster {for_terminal(doc['cluster'])}: "
        f"{s['pass']} pass, {s['fail']} fail, {s['unknown']} unknown",
        markup=False,
    )
    for c in doc["checks"]:
        out.print(
            f"  {c['status'].upper():<8} {c['severity']:<9} {c['id']:<26} {c['title']}",
            markup=False,
        )
        observed = json.dumps(c["observed"])
        op, want = next(iter(c["expected"].items()))
        out.print(
            f"           observed {for_terminal(observed)}, expected {op} {json.dumps(want)}",
            markup=False,
        )
        if c["note"]:
            out.print(f"           note: {for_terminal(c['note'])}", markup=False)
        ctl = ", ".join(f"{k['framework']} {k['control']}" for k in c["controls"])
        out.print(f"           controls: {ctl}", markup=False)
        if c["terraform"]:
            out.print("           terraform:", markup=False)
            for line in c["terraform"].rstrip().splitlines():
                out.print(f"             {line}", markup=False)
