"""The HTML report of a dry run: one self-contained file, no network, no external assets.

Templates are package data (`templates/`), rendered by Jinja2 with autoescaping on, so every
value from a notice or a rule file is escaped. The dashboard (`tracerules.web`) renders its
pages with the same environment setup, macros and lights.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from tracerules import __version__
from tracerules.report import lights, model
from tracerules.rules.compile import RuleSet
from tracerules.runtime.engine.decisions import tally
from tracerules.runtime.store.store import Store
from tracerules.timetext import utc_text

TOPIC_PREFIXES = ("gcn.classic.voevent.", "gcn.notices.")
OPEN_PASSED_UP_TO = 200  # small reports open the events that passed; big ones start closed


def utc(seconds: float | None, precise: bool = False) -> str:
    """POSIX seconds as UTC ISO 8601 (`2023-12-10T12:34:56Z`), or an em dash."""
    text = utc_text(seconds, "%Y-%m-%dT%H:%M:%S", missing="\u2014")
    if seconds is None or not text[:1].isdigit():
        return text
    if precise:
        text += f"{seconds % 1:.3f}"[1:]
    return text + "Z"


def short_topic(topic: str) -> str:
    """A topic without its `gcn.classic.voevent.` or `gcn.notices.` prefix."""
    for prefix in TOPIC_PREFIXES:
        if topic.startswith(prefix):
            return topic[len(prefix) :]
    return topic


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def basename(name: str) -> str:
    """The last part of a notice's file or archive member name."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def relpath(path: str) -> str:
    """A rule file's path relative to the working folder when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def no_link(recorded: str) -> str | None:
    return None


def configure(env: Environment) -> Environment:
    """Filters and helpers every tracerules template may use (report and dashboard)."""
    env.filters.update(
        utc=utc, short_topic=short_topic, plural=plural, basename=basename, relpath=relpath
    )
    env.globals.update(
        light=lights.light,
        lights=lights.lights,
        blank=lights.blank,
        badge=lights.badge,
        legend=lights.legend,
        vote_class=lights.vote_class,
        columns=model.columns,
        tally=tally,
        notice_of=model.notice_of,
        version=__version__,
        product_href=no_link,  # the report is one file: it links nothing; the dashboard does
    )
    return env


def make_environment(*packages: str) -> Environment:
    """A Jinja2 environment over the templates of `packages`, then the report's own."""
    from jinja2 import ChoiceLoader

    loaders = [PackageLoader(p, "templates") for p in (*packages, "tracerules.report")]
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return configure(env)


@functools.cache
def environment() -> Environment:
    return make_environment()


def render_report(
    store: Store,
    rules: RuleSet | None,
    title: str = "tracerules dry run",
    *,
    since: float | None = None,
    until: float | None = None,
    max_events: int | None = None,
    sources: Iterable[str] = (),
    trigger: str | None = None,
) -> str:
    """The report of what is in `store` (typically a dry run), as one HTML document.

    Events are grouped by trigger, in evaluation order. `since`/`until` (POSIX seconds) keep
    the events whose time falls in the range; `max_events` caps the events per trigger
    (the rest are counted); `trigger` shows only that trigger's events (the summary still
    counts everything). `sources` names what was replayed, for the header.
    """
    summary = model.summary(store, rules)
    shown = [t for t in summary.triggers if trigger is None or t.id == trigger]
    sections = model.sections(store, shown, since=since, until=until, max_events=max_events)
    return (
        environment()
        .get_template("report.html")
        .render(
            title=title,
            generated=time.time(),
            summary=summary,
            sections=sections,
            problems=model.problems(store),
            commit=rules.git_commit if rules else None,
            rule_files=[Path(f).name for f in rules.files] if rules else [],
            sources=list(sources),
            open_passed=summary.events <= OPEN_PASSED_UP_TO,
        )
    )
