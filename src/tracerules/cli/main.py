"""The `tracerules` command. Each command's work lives in its own module, imported only
when that command runs, so `tracerules --help` stays fast and light."""

from __future__ import annotations

import gc
from contextlib import AbstractContextManager
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
    # Plain help: typer's rich help imports rich's Markdown (markdown-it) and more, a third of
    # `tracerules --help`'s start-up (issue 16), and reads `[env ...]` in help texts as markup.
    rich_markup_mode=None,
)


def _collector_paused() -> AbstractContextManager[None]:
    """The collector paused while a command imports the rule compiler and what it needs:
    pydantic, Lark, YAML, the expression language. Their objects all stay alive, and its
    passes over them cost a tenth of `tracerules validate` (issue 16)."""
    from tracerules.rules.collector import collector_paused

    return collector_paused()


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
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="accept rules without any trigger")
    ] = False,
) -> None:
    """Check rule files: YAML, schema, expressions, selectors, topics; then lints.

    Exit status: 0 clean, 1 errors, 2 usage, 3 lint findings only.
    """
    with _collector_paused():
        from tracerules.cli.validate import run_validate

    rules = paths or [Path("rules")]
    raise typer.Exit(run_validate(rules, output.value, set(disable or []), allow_empty))


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
    report: Annotated[
        Path | None, typer.Option(help="also write the HTML report to this file")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Replay archived notices through the rules, in notice-time order. Nothing is acted on."""
    with _collector_paused():
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
            report=report,
        )
    )


@app.command("test")
def test_command(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="rule-test files (*.test.yaml) or folders")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="write a JUnit XML report")] = None,
    run: Annotated[
        list[str] | None,
        typer.Option("--run", help="only tests whose name matches (regex or glob); repeatable"),
    ] = None,
) -> None:
    """Run rule unit tests: notices in order, expected decisions, factors and actions.

    Exit status: 0 all passed, 1 a failure or no test found, 2 usage.
    """
    with _collector_paused():
        from tracerules.cli.ruletest import run_tests

    raise typer.Exit(run_tests(paths or [Path("rules")], junit, run or []))


from tracerules.cli.actions import actions_app  # noqa: E402 (beside the other sub-apps)


def _add_service_commands() -> None:
    """`run`, `status` and `echo` keep their many options in their own modules (typer only)."""
    from tracerules.cli import echo, run, status

    app.command("run")(run.run)
    app.command("status")(status.status)
    app.command("echo")(echo.echo)


_add_service_commands()


# -- operator commands over the store (issue 7) -------------------------------------------------

StoreOption = Annotated[
    Path | None,
    typer.Option("--store", "-s", help="the store [env TRACERULES_STORE; ./tracerules.sqlite]"),
]
RulesOption = Annotated[list[Path] | None, typer.Option("--rules", "-r", help="rule folders")]
FormatOption = Annotated[str, typer.Option("--format", "-f", help="text or json")]

notices_app = typer.Typer(
    help="The notices in the store.", no_args_is_help=True, rich_markup_mode=None
)
events_app = typer.Typer(
    help="Events per trigger, with decisions and actions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(notices_app, name="notices")
app.add_typer(events_app, name="events")
app.add_typer(actions_app, name="actions")


@notices_app.command("list")
def notices_list(
    store: StoreOption = None,
    topic: Annotated[str | None, typer.Option(help="only this topic")] = None,
    payload_format: Annotated[
        str | None, typer.Option("--payload-format", help="only json or xml notices")
    ] = None,
    since: Annotated[str | None, typer.Option(help="received from this ISO time on")] = None,
    until: Annotated[str | None, typer.Option(help="received up to this ISO time")] = None,
    event_id: Annotated[str | None, typer.Option("--event-id", help="only this event")] = None,
    limit: Annotated[int, typer.Option(help="rows per page")] = 50,
    offset: Annotated[int, typer.Option(help="rows to skip")] = 0,
    output: FormatOption = "text",
) -> None:
    """List notices, newest first, with the events they belong to."""
    from tracerules.cli.notices import run_list

    raise typer.Exit(
        run_list(
            store,
            topic=topic,
            fmt=payload_format,
            since=since,
            until=until,
            event_id=event_id,
            limit=limit,
            offset=offset,
            output=output,
        )
    )


@notices_app.command("show")
def notices_show(
    notice_id: Annotated[int, typer.Argument(help="the notice's id in the store")],
    store: StoreOption = None,
    output: FormatOption = "text",
) -> None:
    """One notice: its envelope, its payload pretty-printed, and the decisions it made."""
    from tracerules.cli.notices import run_show

    raise typer.Exit(run_show(store, notice_id, output))


@events_app.command("list")
def events_list(
    trigger: Annotated[str | None, typer.Option(help="only this trigger")] = None,
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(help="rows per page")] = 50,
    offset: Annotated[int, typer.Option(help="rows to skip")] = 0,
    output: FormatOption = "text",
) -> None:
    """List events, newest first: notices, decisions, whether one passed, actions."""
    from tracerules.cli.events import run_list

    raise typer.Exit(run_list(store, trigger, limit, offset, output))


@events_app.command("show")
def events_show(
    trigger: Annotated[str, typer.Argument(help="the trigger id")],
    event_id: Annotated[str, typer.Argument(help="the event id")],
    store: StoreOption = None,
    rules: RulesOption = None,
    output: FormatOption = "text",
) -> None:
    """One event: notices, decisions with factors, actions with logs, current conditions."""
    from tracerules.cli.events import run_show

    raise typer.Exit(run_show(store, rules, trigger, event_id, output))


@app.command()
def retrigger(
    trigger: Annotated[str, typer.Argument(help="the trigger id")],
    event_id: Annotated[str, typer.Argument(help="the event id")],
    store: StoreOption = None,
    rules: RulesOption = None,
    actor: Annotated[str | None, typer.Option(help="who decides [user@host]")] = None,
    dry: Annotated[bool, typer.Option("--dry-run", help="show what would happen")] = False,
    out: Annotated[Path, typer.Option("--out", help="folder for file products")] = Path(
        "tracerules-out"
    ),
    output: FormatOption = "text",
) -> None:
    """Decide on an event by hand: MAYBE becomes PASS, and its actions run once."""
    from tracerules.cli.retrigger import run_retrigger

    raise typer.Exit(
        run_retrigger(
            store,
            rules,
            trigger,
            event_id,
            actor=actor,
            dry_run=dry,
            out_dir=out,
            output=output,
        )
    )


@app.command()
def topics(
    store: StoreOption = None,
    rules: RulesOption = None,
    show_all: Annotated[bool, typer.Option("--all", help="also topics never seen")] = False,
    output: FormatOption = "text",
) -> None:
    """Per topic: notices stored, bytes, last seen time and status."""
    from tracerules.cli.topics import run_topics

    raise typer.Exit(run_topics(store, rules, show_all, output))


@app.command()
def serve(
    store: StoreOption = None,
    rules: RulesOption = None,
    host: Annotated[str, typer.Option(help="address to bind; not loopback needs a token")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port")] = 8765,
    refresh: Annotated[int, typer.Option(help="seconds between refreshes while live")] = 10,
    products: Annotated[
        Path | None,
        typer.Option(
            "--products",
            envvar="TRACERULES_OUT",
            help="the file products folder, served read-only "
            "[default: the store's, else ./tracerules-out]",
        ),
    ] = None,
) -> None:
    """A read-only web dashboard over the store, with the file products linked.

    Remote access (a --host other than loopback) needs $TRACERULES_DASHBOARD_TOKEN.
    """
    from tracerules.cli.serve import run_serve

    raise typer.Exit(run_serve(store, rules, host, port, refresh, products))


@app.command("diff")
def diff_command(
    sources: Annotated[
        list[Path],
        typer.Argument(help="notice files, folders, tar archives, NDJSON exports or a store"),
    ],
    base: Annotated[str, typer.Option("--base", help="the git revision to compare with")],
    rules: Annotated[Path, typer.Option("--rules", "-r", help="the rules folder")] = Path("rules"),
    output: Annotated[str, typer.Option("--format", "-f", help="text, markdown or json")] = "text",
    fail_on_change: Annotated[
        bool, typer.Option("--fail-on-change", help="exit 1 when any event changes")
    ] = False,
) -> None:
    """Replay notices under the rules at --base and in the working tree; report what changes.

    Each changed event names the notice and the factor that made the difference.
    """
    with _collector_paused():
        from tracerules.cli.diff import run_diff

    if output not in ("text", "markdown", "json"):
        raise typer.BadParameter("--format is one of text, markdown, json")
    raise typer.Exit(run_diff(base, rules, sources, output, fail_on_change))


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="the folder of the new rules repository")],
    force: Annotated[
        bool, typer.Option("--force", help="write into a folder that is not empty")
    ] = False,
    install: Annotated[
        str | None,
        typer.Option(
            "--install",
            help="the pip requirement CI installs tracerules from, e.g. "
            "'tracerules @ git+https://HOST/tracerules.git@COMMIT' or a path "
            "[default: this tracerules' own checkout, at its commit]",
        ),
    ] = None,
) -> None:
    """Scaffold a rules repository for a new team: topics, a tested example trigger, CI.

    Also real notices for the test, pre-commit hooks and a README.
    """
    from tracerules.cli.init import run_init

    raise typer.Exit(run_init(directory, force, install))


def main() -> None:
    try:
        app()
    finally:
        # The process ends here, and its memory with it: the collector's last pass over every
        # object left (rules, parsed notices, modules), a tenth of a second after loading
        # rules, frees nothing the exit would not (issue 16). Output is flushed and exit
        # handlers run as before.
        gc.freeze()
