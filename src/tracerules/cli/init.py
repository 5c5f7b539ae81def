"""`tracerules init DIR`: scaffold a rules repository for a new observatory team.

It writes the topic registry, an example trigger with its test and the real notices the test
needs, a GitHub Actions workflow and a pre-commit configuration that validate and test the
rules, and a README. A folder that is not empty is left alone unless --force is given.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from tracerules.scaffold import conflicts, write
from tracerules.scaffold.install import default_source, given_source

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def run_init(directory: Path, force: bool, install: str | None = None) -> int:
    """Write the scaffold; returns the exit status."""
    console = Console(highlight=False, soft_wrap=True)
    if directory.exists() and not directory.is_dir():
        console.print(f"[red]error:[/] {escape(str(directory))} is a file, not a folder")
        return EXIT_USAGE
    source = given_source(install) if install else default_source()
    if source is None:
        console.print(
            "[red]error:[/] cannot tell where this tracerules was installed from, and it is "
            "not published on PyPI: pass --install with a pip requirement the new "
            "repository's CI can install, e.g. "
            "'tracerules @ git+https://HOST/tracerules.git@COMMIT' or a path"
        )
        return EXIT_USAGE
    present = conflicts(directory)
    if present and not force:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        console.print(
            f"[red]error:[/] {escape(str(directory))} is not empty ({escape(shown)}); "
            "nothing written. Use --force to write the scaffold into it anyway "
            "(files of the same name are replaced, others are kept)."
        )
        return EXIT_REFUSED
    written = write(directory, source)
    console.print(f"Created a rules repository in [bold]{escape(str(directory))}[/]:")
    for path in written:
        console.print(f"  {escape(str(path.relative_to(directory)))}", markup=True)
    console.print(f"\nCI installs tracerules from {escape(source.note)}:")
    console.print(f"  python -m pip install {escape(repr(source.requirement))}")
    console.print(
        "\nNext:\n"
        f"  cd {escape(str(directory))} && git init\n"
        "  tracerules validate rules && tracerules test rules\n"
        "  pre-commit install        # optional: the same checks before each commit"
    )
    return EXIT_OK
