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


def main() -> None:
    app()
