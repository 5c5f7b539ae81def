"""`tracerules functions`: the built-in table rules compile against (core, sky map, sites)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tracerules.rules.functions import builtin_functions


def show_functions(output: str) -> None:
    specs = sorted(builtin_functions().values(), key=lambda b: (b.category, b.name))
    if output == "json":
        print(
            json.dumps(
                [
                    {
                        "name": b.name,
                        "signature": b.signature(),
                        "category": b.category,
                        "doc": b.doc,
                    }
                    for b in specs
                ],
                indent=2,
            )
        )
        return
    table = Table(title="tracerules built-in functions", show_lines=False)
    table.add_column("category", style="cyan")
    table.add_column("signature", style="bold")
    table.add_column("what it does")
    for b in specs:
        # `[number]` marks an optional argument: escaped, or rich reads it as a style tag.
        table.add_row(b.category, escape(b.signature()), escape(b.doc))
    Console().print(table)
