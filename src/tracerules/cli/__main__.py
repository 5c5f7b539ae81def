"""`python -m tracerules.cli` runs the command line, like the `tracerules` script."""

from tracerules.cli.main import main

main()
