"""The `tracerules` command. Each command's work lives in its own module, imported only
when that command runs, so `tracerules --help` stays fast and light."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="tracerules",
    help="Declarative follow-up rules for GCN transient alerts: validate, test, replay, run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class OutputFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="rule files or folders")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="output format")] = (
        OutputFormat.text
    ),
    disable: Annotated[list[str] | None, typer.Option(help="lint identifiers to skip")] = None,
) -> None:
    """Check rule files: YAML, schema, expressions, selectors, topics; then lints.

    Exit status: 0 clean, 1 errors, 2 usage, 3 lint findings only.
    """
    from tracerules.cli.validate import run_validate

    raise typer.Exit(run_validate(paths or [Path("rules")], output.value, set(disable or [])))


@app.command()
def schema() -> None:
    """Print the JSON Schema of rule files, for editor completion."""
    import json

    from tracerules.rules.models import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def functions(
    output: Annotated[str, typer.Option("--format", "-f", help="text or json")] = "text",
) -> None:
    """List the built-in functions of the expression language."""
    from tracerules.cli.functions import show_functions

    show_functions(output)


@app.command("dry-run")
def dry_run(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="notice files, folders, tar archives, NDJSON exports or a service store"
        ),
    ],
    rules: Annotated[list[Path] | None, typer.Option("--rules", "-r", help="rule folders")] = None,
    topic: Annotated[
        str | None, typer.Option(help="the topic of every notice (no inference)")
    ] = None,
    output: Annotated[
        str, typer.Option("--format", "-f", help="text, json, ndjson or html")
    ] = "text",
    out_file: Annotated[Path | None, typer.Option("--output", "-o", help="write to a file")] = None,
    since: Annotated[str | None, typer.Option(help="only notices from this ISO time on")] = None,
    until: Annotated[str | None, typer.Option(help="only notices up to this ISO time")] = None,
    trigger: Annotated[str | None, typer.Option(help="show only this trigger")] = None,
    products: Annotated[
        Path | None, typer.Option(help="render file products into this folder")
    ] = None,
    store: Annotated[Path | None, typer.Option(help="keep the replay's store in this file")] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="show every event in text output")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Replay archived notices through the rules, in notice-time order. Nothing is acted on."""
    from tracerules.cli.dryrun import run_dry_run

    if output not in ("text", "json", "ndjson", "html"):
        raise typer.BadParameter("--format is one of text, json, ndjson, html")
    raise typer.Exit(
        run_dry_run(
            rules or [Path("rules")],
            sources,
            topic=topic,
            output=output,
            out_file=out_file,
            since=since,
            until=until,
            trigger=trigger,
            products=products,
            store_path=store,
            quiet=quiet,
            show_all=show_all,
        )
    )


def main() -> None:
    app()
