"""`tracerules serve`: the read-only web dashboard, on loopback unless a token guards it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tracerules.cli.operator import (
    EXIT_OK,
    UsageError,
    connect_store,
    fail,
    rule_folders,
    store_path,
)
from tracerules.runtime.store.dialect import StoreLocation, display_location, store_exists

DEFAULT_PRODUCTS = Path("tracerules-out")


def products_folder(given: Path | None, recorded: Path | None) -> Path | None:
    """The folder to serve: as given, else the one the store recorded, else ./tracerules-out."""
    if given is not None:
        return given
    for folder in (recorded, DEFAULT_PRODUCTS):
        if folder is not None and folder.is_dir():
            return folder
    return None


def run_serve(
    store_option: StoreLocation | None,
    rule_paths: Sequence[Path] | None,
    host: str,
    port: int,
    refresh: int,
    products: Path | None = None,
) -> int:
    import uvicorn

    from tracerules.runtime.service.health import recorded_products
    from tracerules.web.app import create_app
    from tracerules.web.auth import TOKEN_ENV, is_loopback

    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and token is None:
        return fail(f"--host {host} serves beyond this machine: set ${TOKEN_ENV} first")
    path = store_path(store_option)
    if not store_exists(path):
        where = display_location(path)
        return fail(f"no store at {where}: pass --store or set $TRACERULES_STORE")
    if products is not None and not products.is_dir():
        return fail(f"--products {products} is not a folder")
    try:
        reader = connect_store(path, read_only=True)
    except UsageError as err:
        return fail(str(err))
    try:
        folders = rule_folders(rule_paths, reader)
        served = products_folder(products, recorded_products(reader))
    finally:
        reader.close()
    app = create_app(path, folders, token=token, refresh=refresh, products=served)
    where = f"http://{host}:{port}/"
    print(
        f"tracerules dashboard on {where} over {display_location(path)}"
        + (" (token required)" if token else "")
    )
    print(f"products: {served.resolve()} under {where}products/" if served else "products: none")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return EXIT_OK
