"""`tracerules run`: the long-running Kafka service.

This module is imported when the command line is built, so it imports only typer and the
standard library; the service itself is imported when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tracerules.runtime.service.kafka_settings import KafkaSettings, StartPosition
    from tracerules.runtime.store.lock import DatabaseLock

RulesArg = Annotated[
    list[Path] | None, typer.Argument(help="rule files or folders [default: rules]")
]
StoreOpt = Annotated[
    str,
    typer.Option(
        "--store", envvar="TRACERULES_STORE", help="a SQLite file, or a postgresql:// URL"
    ),
]
OutOpt = Annotated[
    Path, typer.Option("--out", envvar="TRACERULES_OUT", help="where file products go")
]
DomainOpt = Annotated[
    str | None,
    typer.Option(
        "--domain",
        envvar="GCN_KAFKA_DOMAIN",
        help="GCN Kafka domain: gcn.nasa.gov (default) or test.gcn.nasa.gov",
    ),
]
BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        envvar="TRACERULES_BOOTSTRAP_SERVERS",
        help="host:port of any other Kafka (no GCN credentials needed)",
    ),
]
KafkaConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--kafka-config",
        envvar="TRACERULES_KAFKA_CONFIG",
        help="a key = value file: client_id, client_secret, domain, librdkafka settings",
    ),
]
SettingOpt = Annotated[
    list[str] | None,
    typer.Option("-X", "--kafka-setting", help="a librdkafka setting, key=value (repeatable)"),
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", min=1, help="action worker threads per destination")
]
LogLevelOpt = Annotated[
    str, typer.Option("--log-level", envvar="TRACERULES_LOG_LEVEL", help="debug, info, warning")
]


def run(
    rules: RulesArg = None,
    store: StoreOpt = "tracerules.sqlite",
    out: OutOpt = Path("tracerules-out"),
    domain: DomainOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    group_id: Annotated[
        str | None,
        typer.Option(
            "--group-id",
            envvar="TRACERULES_GROUP_ID",
            help="Kafka consumer group [default: the store's, or a new one]",
        ),
    ] = None,
    start: Annotated[
        str,
        typer.Option(
            "--start",
            help="latest, earliest or an ISO 8601 time: where a new group starts "
            "(a group that committed resumes where it stopped)",
        ),
    ] = "latest",
    kafka_config: KafkaConfigOpt = None,
    kafka_setting: SettingOpt = None,
    workers: WorkersOpt = 2,
    watch: Annotated[
        bool, typer.Option("--watch/--no-watch", help="reload when rule files change")
    ] = True,
    log_level: LogLevelOpt = "info",
    allow_empty: Annotated[
        bool,
        typer.Option("--allow-empty", help="run (and reload) rules that hold no trigger"),
    ] = False,
) -> None:
    """Listen to GCN Kafka and act on the rules: the long-running service.

    Commits an offset only after its notice and decisions are stored. Logs one JSON line per
    notice and per decision on stderr. SIGHUP reloads the rules; SIGTERM/SIGINT finish the
    current notice, commit and exit 0.
    """
    from tracerules.runtime.service.kafka_settings import StartPosition

    try:
        position = StartPosition.parse(start)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--start") from None
    code = serve(
        rules or [Path("rules")],
        store,
        out,
        position,
        group_id,
        kafka=(domain, bootstrap_servers, kafka_config, kafka_setting or []),
        workers=workers,
        watch=watch,
        log_level=log_level,
        echo=False,
        allow_empty=allow_empty,
    )
    raise typer.Exit(code)


def store_failed(store: str, err: Exception) -> int:
    """A store that cannot be opened (its server refuses or does not answer, a file that is
    not a database): one line and exit status 2, as `status` and `events` say it."""
    from tracerules.runtime.store.dialect import display_location

    print(f"error: cannot open the store {display_location(store)}: {err}", file=sys.stderr)
    return 2


def serve(
    rules_paths: list[Path],
    store: str,
    out: Path,
    start: StartPosition,
    group_id: str | None,
    *,
    kafka: tuple[str | None, str | None, Path | None, list[str]],
    workers: int,
    watch: bool,
    log_level: str,
    echo: bool,
    allow_empty: bool = False,
) -> int:
    """Load settings and rules, then run the service (or a relisten); the exit status. A
    store that cannot be opened is one line and status 2 (`store_failed`)."""
    from confluent_kafka import KafkaException

    from tracerules.errors import RuleError, SourceCache, render_human
    from tracerules.rules.compile import load_ruleset
    from tracerules.rules.guard import empty_set
    from tracerules.runtime.service import logs
    from tracerules.runtime.service.kafka import KafkaSource
    from tracerules.runtime.service.kafka_settings import KafkaSetupError, load_settings
    from tracerules.runtime.service.loop import (
        Service,
        ServiceOptions,
        install_signal_handlers,
        resolve_group,
    )
    from tracerules.runtime.store.dialect import display_location, store_errors, store_file
    from tracerules.runtime.store.lock import DatabaseLock, lock_store

    domain, servers, config_file, settings = kafka
    try:
        pairs = dict(_setting(s) for s in settings)
        kafka_settings = load_settings(
            domain=domain, bootstrap_servers=servers, config_file=config_file, overrides=pairs
        )
    except (KafkaSetupError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        rules = load_ruleset(rules_paths)
        empty = empty_set(len(rules.triggers), rules_paths)
        if empty is not None and not (allow_empty or echo):
            raise RuleError([empty])
    except RuleError as err:
        for diag in err.diagnostics:
            print(render_human(diag, SourceCache()), file=sys.stderr)
        print("the rules do not load: see `tracerules validate`", file=sys.stderr)
        return 1
    try:  # from here on the store is opened
        file = store_file(store)
        # Held until the process exits. PostgreSQL: every service holds it shared; echo alone.
        lock = lock_store(file) if file is not None else _database_lock(store, team=not echo)
        if lock is None:
            # SQLite: two engines on one file would each trust their own cache of event states.
            print(
                "error: another `tracerules run` or `echo` is using the store "
                f"{display_location(store)}; stop it first",
                file=sys.stderr,
            )
            return 1
        group = resolve_group(store, group_id, echo)
        if file is None and not echo:
            kafka_settings = _team_member(kafka_settings)
        options = ServiceOptions(
            rules_paths,
            store,
            out,
            start,
            group,
            where=kafka_settings.where,
            workers=workers,
            watch_interval=1.0 if watch else None,
            echo=echo,
            secrets=kafka_settings.secrets(),
            allow_empty=allow_empty,
            session_timeout_s=float(kafka_settings.config.get("session.timeout.ms", 45000)) / 1000,
        )
        service = Service(
            options,
            rules,
            lambda hooks: KafkaSource.open(kafka_settings, group, start, hooks, echo=echo),
        )
        logs.setup(log_level, service.secrets)
        install_signal_handlers(service)
        if isinstance(lock, DatabaseLock):
            lock.watch(lambda why: service.request_stop(why, 1))  # 1: systemd restarts it
        try:
            return service.run()
        except KafkaException as err:  # e.g. an unknown -X setting: librdkafka refuses it
            print(f"error: Kafka client: {err}", file=sys.stderr)
            return 2
    except store_errors() as err:
        return store_failed(store, err)


def _team_member(settings: KafkaSettings) -> KafkaSettings:
    """The services of a team are dynamic members of the group (no group.instance.id unless
    -X sets one) that rebalance incrementally (cooperative-sticky, unless -X sets another
    strategy): a member joining or leaving moves only the partitions it takes or gives up,
    and the others are consumed meanwhile. Why not static: docs/store.md, "Several services
    on one store". Every service of the group must use the same strategy."""
    import dataclasses

    config = {"partition.assignment.strategy": "cooperative-sticky", **settings.config}
    return dataclasses.replace(settings, config=config)


def _database_lock(store: str, *, team: bool) -> DatabaseLock | None:
    """The PostgreSQL store's service lock: shared by the services of a team (waiting only
    while a relisten has it), or for `echo` alone and only if no service runs."""
    from tracerules.runtime.store.lock import DatabaseLock, wait_for_database_lock

    if team:
        return wait_for_database_lock(store, lambda who: _waiting(store, who), shared=True)
    lock = DatabaseLock(store)
    if lock.try_acquire():
        return lock
    lock.close()
    return None


def _waiting(store: str, holder: str) -> None:
    from tracerules.runtime.store.dialect import display_location

    print(
        f"waiting: a relisten (`tracerules echo`, from {holder}) is using the store "
        f"{display_location(store)}; this service starts when it ends",
        file=sys.stderr,
        flush=True,
    )


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"-X expects key=value, not {text!r}")
    return key.strip(), value.strip()
