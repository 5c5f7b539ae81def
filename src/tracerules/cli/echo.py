"""`tracerules echo DURATION`: relisten to the last N days through the service's pipeline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tracerules.cli.run import (
    BootstrapOpt,
    DomainOpt,
    KafkaConfigOpt,
    LogLevelOpt,
    OutOpt,
    RulesArg,
    SettingOpt,
    StoreOpt,
    WorkersOpt,
    serve,
)


def echo(
    duration: Annotated[str, typer.Argument(help="how far back to relisten: 3d, 12h, 90 min")],
    rules: RulesArg = None,
    store: StoreOpt = "tracerules.sqlite",
    out: OutOpt = Path("tracerules-out"),
    domain: DomainOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    kafka_setting: SettingOpt = None,
    workers: WorkersOpt = 2,
    log_level: LogLevelOpt = "info",
) -> None:
    """Relisten to the rules' topics over the last DURATION, then stop.

    A throwaway consumer group seeks by timestamp on every partition and feeds the same
    pipeline as `run`. Notices already in the store are recognised (same offset or same
    payload), so nothing acts twice. Stops once every partition is caught up and the actions
    it started have run. Stop `tracerules run` on the same store first.
    """
    from tracerules.dsl.convert import to_duration
    from tracerules.runtime.service.kafka_settings import StartPosition

    seconds = to_duration(duration)
    if not isinstance(seconds, float) or seconds <= 0:
        raise typer.BadParameter(f"{duration!r} is not a positive duration", param_hint="DURATION")
    code = serve(
        rules or [Path("rules")],
        store,
        out,
        StartPosition("time", time.time() - seconds),
        None,
        kafka=(domain, bootstrap_servers, kafka_config, kafka_setting or []),
        workers=workers,
        watch=False,
        log_level=log_level,
        echo=True,
    )
    raise typer.Exit(code)
