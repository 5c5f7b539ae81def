"""`tracerules serve`: the read-only web dashboard, on loopback unless a token guards it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tracerules.cli.operator import EXIT_OK, UsageError, fail, rule_folders, store_path


def run_serve(
    store_option: Path | None, rule_paths: Sequence[Path] | None, host: str, port: int, refresh: int
) -> int:
    import uvicorn

    from tracerules.web.access import ReadOnlyStore
    from tracerules.web.app import create_app
    from tracerules.web.auth import TOKEN_ENV, is_loopback

    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and token is None:
        return fail(f"--host {host} serves beyond this machine: set ${TOKEN_ENV} first")
    path = store_path(store_option)
    if not path.is_file():
        return fail(str(UsageError(f"no store at {path}: pass --store or set $TRACERULES_STORE")))
    reader = ReadOnlyStore(path)
    try:
        folders = rule_folders(rule_paths, reader)
    finally:
        reader.close()
    app = create_app(path, folders, token=token, refresh=refresh)
    where = f"http://{host}:{port}/"
    print(f"tracerules dashboard on {where} over {path}" + (" (token required)" if token else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return EXIT_OK
