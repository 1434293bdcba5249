"""``podmortem watch SOURCE... --case-root DIR``: detect in the audit stream as it is written,
and seal evidence of the pod a finding names before it disappears."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from podmortem.cli.options import DockerHost, Kubeconfig, NoBuiltin, RulesDirs, SigmaDirs
from podmortem.cloud.clients import CloudConfig, provider_steps
from podmortem.cloud.model import PROVIDERS
from podmortem.errors import InputError

if TYPE_CHECKING:
    from podmortem.case import Case
    from podmortem.cloud.executor import Procedure
    from podmortem.cloud.model import Provider

SOURCE_HELP = (
    "An audit log file being appended to (rotation followed); 'webhook' (the API server's"
    " audit webhook backend posts to --listen); cloudwatch:LOG_GROUP (EKS);"
    " loganalytics:WORKSPACE_ID (AKS; with --cluster, --subscription, --resource-group);"
    " cloudlogging:PROJECT (GKE; with --cluster, --location)."
)


def register(root: typer.Typer) -> None:
    root.command("watch")(watch)


def _provider(name: str | None) -> Provider | None:
    for p in PROVIDERS:
        if name == p:
            return p
    if name is not None:
        raise InputError(f"--provider is one of {', '.join(PROVIDERS)}")
    return None


def _protection(
    provider: Provider | None, cloud: CloudConfig, kubeconfig: str | None, target_template: str
) -> Callable[[Case], Procedure] | None:
    """The procedure a response runs to protect (and contain) the pod, built per response
    (fresh credentials for a long-lived process): the Kubernetes steps whenever the pod is
    a Kubernetes pod, plus the provider's steps with --provider. None when neither applies
    (a local engine target without a cluster): the response then says protection was
    skipped."""
    if not (provider or kubeconfig or target_template.startswith("k8s://")):
        return None
    from podmortem.cloud.clients import kubernetes_steps
    from podmortem.cloud.executor import Procedure

    def build(case: Case) -> Procedure:
        steps = provider_steps(provider, cloud) if provider else None
        return Procedure(steps, kubernetes_steps(kubeconfig), case=case)

    return build


def _sources(specs: list[str], opts: dict[str, Any]) -> list[Any]:
    from podmortem.watch.sources.tail import TailSource

    out: list[Any] = []
    for spec in specs:
        kind, sep, arg = spec.partition(":")
        if spec == "webhook":
            from podmortem.watch.sources.webhook import WebhookSource, parse_listen

            if not opts["listen"]:
                raise InputError("the webhook source needs --listen HOST:PORT")
            host, port = parse_listen(opts["listen"])
            out.append(
                WebhookSource(
                    spool_dir=opts["state_dir"] / "webhook-spool",
                    host=host,
                    port=port,
                    token_file=opts["token_file"],
                    tls_cert=opts["tls_cert"],
                    tls_key=opts["tls_key"],
                    insecure_no_tls=opts["insecure_no_tls"],
                )
            )
        elif sep and kind == "cloudwatch":
            from podmortem.watch.sources.cloudwatch import CloudWatchSource

            out.append(CloudWatchSource.from_environment(arg, region=opts["region"]))
        elif sep and kind == "loganalytics":
            from podmortem.watch.sources.polled import log_analytics

            if not (opts["cluster"] and opts["subscription"] and opts["resource_group"]):
                raise InputError("loganalytics: needs --cluster, --subscription, --resource-group")
            aks = provider_steps("aks", opts["cloud"])
            out.append(log_analytics(aks, cluster=opts["cluster"], workspace_id=arg))
        elif sep and kind == "cloudlogging":
            from podmortem.watch.sources.polled import cloud_logging

            if not opts["cluster"]:
                raise InputError("cloudlogging: needs --cluster")
            gke = provider_steps("gke", replace(opts["cloud"], project=arg))
            out.append(cloud_logging(gke, cluster=opts["cluster"]))
        else:
            p = Path(spec)
            if p.exists() and not p.is_file():
                raise InputError(f"{spec}: not a regular file")
            out.append(TailSource(p, from_end=opts["from_end"]))
    return out


def watch(  # noqa: PLR0917 - typer maps parameters to options
    sources: Annotated[list[str], typer.Argument(help=SOURCE_HELP, show_default=False)],
    case_root: Annotated[Path, typer.Option("--case-root", help="Cases are created under it.")],
    respond: Annotated[
        str, typer.Option("--respond", help="none | acquire | acquire+contain")
    ] = "acquire",
    rules: RulesDirs = None,
    sigma: SigmaDirs = None,
    no_builtin: NoBuiltin = False,
    min_severity: Annotated[
        str, typer.Option("--min-severity", help="Respond to findings at or above this.")
    ] = "high",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only log what would be done; touch nothing.")
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="Positions and watch database (default CASE_ROOT/.watch)."
        ),
    ] = None,
    cooldown: Annotated[
        float, typer.Option("--cooldown", min=0.0, help="Seconds between responses to one pod.")
    ] = 900.0,
    max_responses: Annotated[
        int, typer.Option("--max-responses", min=1, help="Responses allowed per --rate-window.")
    ] = 5,
    rate_window: Annotated[
        float, typer.Option("--rate-window", min=1.0, help="Seconds of the rate limit.")
    ] = 60.0,
    target_template: Annotated[
        str,
        typer.Option(
            "--target",
            help="Acquisition target for a pod: k8s://{namespace}/{pod} (default) or e.g."
            " docker://{pod} for local engines.",
        ),
    ] = "k8s://{namespace}/{pod}",
    budget: Annotated[float, typer.Option("--budget", min=1.0, help="Acquisition seconds.")] = 30.0,
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            help="eks | aks | gke: add the cloud's protection steps (without it: the"
            " Kubernetes steps alone).",
        ),
    ] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Cluster name.")] = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="Webhook HOST:PORT (loopback by default).")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="Bearer token the webhook requires.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Webhook TLS cert.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Webhook TLS key.")] = None,
    insecure_no_tls: Annotated[
        bool, typer.Option("--insecure-no-tls", help="Plain HTTP webhook (tests only).")
    ] = False,
    health: Annotated[
        str | None, typer.Option("--health", help="Serve /healthz on HOST:PORT.")
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="AWS region.")] = None,
    subscription: Annotated[
        str | None,
        typer.Option("--subscription", envvar="AZURE_SUBSCRIPTION_ID", help="Azure subscription."),
    ] = None,
    resource_group: Annotated[
        str | None, typer.Option("--resource-group", help="AKS cluster's resource group.")
    ] = None,
    location: Annotated[str | None, typer.Option("--location", help="GKE location.")] = None,
    from_end: Annotated[
        bool, typer.Option("--from-end", help="A file without saved position: start at its end.")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Stop when every source has nothing new (tests).")
    ] = False,
    docker_host: DockerHost = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Watch audit logs as they are written, run the audit rules incrementally, and on a
    finding naming a pod: open a case, acquire the pod, protect it (and with
    acquire+contain isolate it). Structured JSON logs on stderr."""
    from podmortem.acquire.collector import Options
    from podmortem.acquire.runtimes import open_runtime
    from podmortem.audit.analyze import load_rules
    from podmortem.cli.options import endpoints
    from podmortem.findings import Severity
    from podmortem.watch.actions import LibraryActions
    from podmortem.watch.health import Health, serve
    from podmortem.watch.jsonlog import JsonLog
    from podmortem.watch.loop import Watcher
    from podmortem.watch.responder import MODES, ResponsePolicy
    from podmortem.watch.sources.webhook import parse_listen

    if respond not in MODES:
        raise InputError(f"--respond is one of {', '.join(MODES)}")
    try:
        level = Severity.parse(min_severity)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    state = state_dir or case_root / ".watch"
    platform = _provider(provider)
    cloud = CloudConfig(
        region=region, subscription=subscription, resource_group=resource_group, location=location
    )
    opts = {
        "listen": listen,
        "state_dir": state,
        "token_file": token_file,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "insecure_no_tls": insecure_no_tls,
        "region": region,
        "from_end": from_end,
        "cluster": cluster,
        "subscription": subscription,
        "resource_group": resource_group,
        "cloud": cloud,
    }
    srcs = _sources(sources, opts)
    ruleset = load_rules(builtin=not no_builtin, sigma_dirs=sigma or (), rules_dirs=rules or ())
    where = endpoints(docker_host=docker_host, kubeconfig=kubeconfig)
    actions = LibraryActions(
        lambda ref: open_runtime(ref, where),
        options=Options(budget=budget),
        target_template=target_template,
        procedure=_protection(platform, cloud, kubeconfig, target_template),
        provider=platform,
        cluster=cluster or "",
    )
    log = JsonLog()
    hb = Health()
    if health:
        host, port = parse_listen(health)
        serve(hb, host, port)
    watcher = Watcher(
        srcs,
        state_dir=state,
        rules=ruleset,
        policy=ResponsePolicy(
            mode=respond,
            min_severity=level,
            dry_run=dry_run,
            cooldown_s=cooldown,
            max_responses=max_responses,
            rate_window_s=rate_window,
        ),
        actions=actions,
        case_root=case_root,
        log=log,
        health=hb,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watcher.run(stop, exit_when_idle=once)
