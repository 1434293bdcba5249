"""``podmortem audit``: Kubernetes audit-log analysis (EKS, AKS, GKE, self-managed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from podmortem.cli.options import NoBuiltin, RulesDirs, SigmaDirs
from podmortem.escape import for_terminal
from podmortem.findings import Caveat, Severity

app = typer.Typer(
    help="Kubernetes audit-log analysis (EKS, AKS, GKE, self-managed).", no_args_is_help=True
)
TOP_FINDINGS = 15
TOP_CAVEATS = 8
_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFORMATIONAL: "dim",
}


def register(root: typer.Typer) -> None:
    from podmortem.cli import audit_reconstruct

    audit_reconstruct.register(app)  # actor, object, credential, timeline (issue 6)
    app.command("hunt")(hunt_cmd)  # rules as cloud log-engine queries (issue 10)
    root.add_typer(app, name="audit")


def _severity(value: str) -> Severity:
    try:
        return Severity.parse(value)
    except ValueError as exc:
        raise typer.BadParameter("one of informational, low, medium, high, critical") from exc


@app.command("analyze")
def analyze_cmd(  # noqa: PLR0917 - Typer maps each parameter to an option
    paths: Annotated[
        list[str],
        typer.Argument(help="Audit logs: files, folders (recursive) or - for standard input."),
    ],
    case_dir: Annotated[
        Path | None,
        typer.Option(
            "--case", help="Case folder: inputs become artifacts, results go in its index."
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full result as JSON to this file.")
    ] = None,
    sigma: SigmaDirs = None,
    rules: RulesDirs = None,
    no_builtin: NoBuiltin = False,
    min_severity: Annotated[
        str, typer.Option("--min-severity", help="Hide findings below this severity.")
    ] = "informational",
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="duckdb (embedded, the default) or spark (pip install podmortem[spark]):"
            " same rules, same findings; Spark also reads s3a://, gs://, abfss:// URLs.",
        ),
    ] = "duckdb",
    spark_master: Annotated[
        str, typer.Option("--spark-master", help="Spark master URL for --engine spark.")
    ] = "local[2]",
    keep_raw: Annotated[
        bool,
        typer.Option(
            "--keep-raw",
            help="Copy every original record into the event table's raw column (by default"
            " only when a rule reads it: source_file and source_line point at the original).",
        ),
    ] = False,
    spark_scratch: Annotated[
        str | None,
        typer.Option(
            "--spark-scratch",
            help="Where Spark stages normalized events (a URL all workers reach on a real"
            " cluster; a local temporary folder by default).",
        ),
    ] = None,
) -> None:
    """Read audit logs in any EKS, AKS, GKE or native format and report attacker techniques.

    A PATH may also be a Parquet dataset written by `audit export-parquet` (recognised from
    its content)."""
    from podmortem.audit.analyze import analyze, finding_json
    from podmortem.case import Case

    console = Console(highlight=False)  # built per run: the terminal width is read now
    level = _severity(min_severity)
    if engine not in ("duckdb", "spark"):
        raise typer.BadParameter("duckdb or spark", param_hint="--engine")
    if engine == "spark":
        from podmortem.audit.spark.session import require_pyspark

        require_pyspark()  # exit 4 with the install hint before anything else is done
        if case_dir is not None:
            raise typer.BadParameter(
                "not with --engine spark (a fleet archive does not belong in one case index);"
                " write the events with `audit export-parquet` and analyse those into the case",
                param_hint="--case",
            )
        from podmortem.audit.spark.engine import analyze_spark

        result = analyze_spark(
            paths,
            master=spark_master,
            sigma_dirs=sigma or (),
            rules_dirs=rules or (),
            builtin=not no_builtin,
            min_severity=level,
            scratch=spark_scratch,
            keep_raw=True if keep_raw else None,
        )
        case = None
    else:
        case = Case.open(case_dir) if case_dir is not None else None
        result = analyze(
            paths,
            case=case,
            sigma_dirs=sigma or (),
            rules_dirs=rules or (),
            builtin=not no_builtin,
            min_severity=level,
            keep_raw=True if keep_raw else None,
        )
    if json_out is not None:
        doc = result.to_dict()
        json_out.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")

    # ------------------------------------------------------------ terminal summary
    console.print(
        f"[bold]{result.events_read}[/] audit events from {len(result.files)} file(s);"
        f" rules: {result.rules.count('builtin')} built-in, {result.rules.count('sigma')} Sigma,"
        f" {result.rules.count('custom')} custom"
    )
    if result.events_by_source:
        src = ", ".join(f"{for_terminal(k)} {v}" for k, v in result.events_by_source.items())
        console.print(f"  by source: {src}")
    if result.skipped:
        sk = ", ".join(f"{for_terminal(k)} {v}" for k, v in result.skipped.items())
        console.print(f"  skipped records: {sk}")
    for err in (result.rules.errors + result.engine.runtime_errors)[:TOP_CAVEATS]:
        console.print(
            f"  [yellow]rule not loaded[/] {for_terminal(err.path)}: {for_terminal(err.reason)}"
        )

    findings = result.findings
    counts = {s: sum(1 for f in findings if f.severity == s) for s in reversed(Severity)}
    console.print(
        f"\n[bold]{len(findings)} finding(s)[/]: "
        + ", ".join(f"[{_STYLE[s]}]{c} {s}[/]" for s, c in counts.items() if c)
    )
    if findings:
        table = Table(show_lines=False, pad_edge=False, box=None)
        for col in ("severity", "first seen (UTC)", "rule", "actor", "object", "n"):
            table.add_column(col, overflow="fold")
        for f in findings[:TOP_FINDINGS]:
            j = finding_json(f)
            obj = str(j["object"] or "")
            if j.get("commands"):
                obj += " $ " + str(j["commands"][0])
            table.add_row(
                f"[{_STYLE[f.severity]}]{f.severity}[/]",
                f.time.strftime("%Y-%m-%d %H:%M:%S") if f.time else "",
                for_terminal(f.title, 80),
                for_terminal(f"{j['actor']} ({j['actor_class']})", 100),
                for_terminal(obj, 160),
                str(j.get("peak") or j.get("requests") or ""),
            )
        console.print(table)
        if len(findings) > TOP_FINDINGS:
            console.print(f"  ... {len(findings) - TOP_FINDINGS} more (see --json or the case)")
    below = len(result.engine.findings) - len(findings)
    if below:
        console.print(f"  {below} finding(s) below {level} not shown")
    supp = result.suppressed
    if supp:
        actors = len({(s.actor, s.actor_class) for s in supp})
        console.print(
            f"  {sum(s.requests for s in supp)} match(es) by {actors} system identities"
            " suppressed as expected behaviour (listed in --json)"
        )
    if result.reconstruction is not None:
        from podmortem.cli.audit_reconstruct import print_reconstruction

        print_reconstruction(console, result.reconstruction)
    if result.caveats:
        console.print(f"\n[bold]{len(result.caveats)} caveat(s)[/]:")
        _print_caveats(console, result.caveats, more="more")
    if json_out is not None:
        console.print(f"\nJSON written to {for_terminal(json_out)}")
    if case is not None:
        console.print(f"case {for_terminal(case.case_id)}: inputs, events and findings recorded")


@app.command("export-parquet")
def export_parquet_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(help="Audit logs: files, folders (recursive) or - for standard input."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (new or empty): cluster=.../day=.../")
    ],
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write what was read (files, counts, skips, caveats) as JSON to this file:"
            " the readers' caveats about the original files are not in the Parquet.",
        ),
    ] = None,
) -> None:
    """Write the normalized events as Parquet partitioned by cluster and day, the form both
    engines (`audit analyze OUT`, `--engine spark`) read fastest."""
    from podmortem.audit.analyze import DEFAULT_MEMORY_LIMIT, load_inputs
    from podmortem.audit.parquet import export, scratch_connection

    console = Console(highlight=False)
    con, tmp = scratch_connection(DEFAULT_MEMORY_LIMIT)
    try:
        loaded = load_inputs(con, paths)
        result = export(con, out, loaded)
    finally:
        con.close()
        tmp.cleanup()
    if json_out is not None:
        doc = {**loaded.to_dict(), "parquet_files": result.files}
        json_out.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(
        f"[bold]{result.events}[/] events from {len(loaded.files)} file(s) written to"
        f" {for_terminal(out)} as {len(result.files)} Parquet file(s)"
    )
    _print_caveats(console, loaded.caveats, more="more caveat(s)")


def hunt_cmd(  # noqa: PLR0917 - Typer maps each parameter to an option
    provider: Annotated[str, typer.Argument(help="eks, aks or gke.")],
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="Only this rule id (repeatable).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="RFC 3339 time or a duration back from now (24h, 7d)."),
    ] = None,
    sigma: SigmaDirs = None,
    rules: RulesDirs = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="Only this cluster (and its log group).")
    ] = None,
) -> None:
    """Print each rule as the query to run where the provider keeps its audit logs."""
    from podmortem.audit.hunt import PROVIDERS, UnknownRuleError, load_rules, plan_hunt
    from podmortem.audit.hunt.render import render_text

    if provider not in PROVIDERS:
        raise typer.BadParameter("one of eks, aks, gke", param_hint="PROVIDER")
    if fmt not in ("text", "json"):
        raise typer.BadParameter("text or json", param_hint="--format")
    ruleset = load_rules(sigma or (), rules or ())
    try:
        plan = plan_hunt(provider, ruleset, rule_ids=rule or (), since=since, cluster=cluster)
    except UnknownRuleError as exc:
        raise typer.BadParameter(exc.message, param_hint="--rule") from None
    if fmt == "json":
        typer.echo(json.dumps(plan.to_dict(), indent=2))
    else:
        typer.echo(render_text(plan), nl=False)


def _print_caveats(console: Console, caveats: Sequence[Caveat], *, more: str) -> None:
    """The first caveats, one line each, escaped for the terminal; how many more."""
    for c in caveats[:TOP_CAVEATS]:
        where = c.provenance.artifact if c.provenance and c.provenance.artifact else ""
        console.print(
            f"  [yellow]{for_terminal(c.kind)}[/] {for_terminal(c.message, 300)}"
            + (f" ({for_terminal(where, 200)})" if where else "")
        )
    if len(caveats) > TOP_CAVEATS:
        console.print(f"  ... {len(caveats) - TOP_CAVEATS} {more} (see --json)")
