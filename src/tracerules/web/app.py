"""The dashboard's Starlette application: read-only pages over the store.

Pages: the overview, triggers, one trigger (its rule file, then paginated events with
current and historic factor lights, product files linked, sky maps shown), notices with
filters, one notice, and the action and observation log; `/products/` serves the products
folder read-only. Stream status is in the header of every page, and pages refresh themselves
while the service runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tracerules.report import model
from tracerules.report.html import make_environment
from tracerules.report.model import Summary
from tracerules.runtime.store.dialect import StoreLocation
from tracerules.web import pages
from tracerules.web.access import Rules, StorePool, TtlCache
from tracerules.web.auth import Guard
from tracerules.web.current import ConditionsMemo
from tracerules.web.products import PREFIX, Products
from tracerules.web.status import status

SUMMARY_TTL_S = 5.0
SKYMAP_TOPIC = "igwn.gwalert"  # its alerts carry sky maps, which current conditions decode


def preload_skymaps() -> None:
    """Import the FITS reader now: half a second the first sky-map page would otherwise pay."""
    from astropy.io import fits  # noqa: F401

    from tracerules.products.sky import skymap  # noqa: F401


class Dashboard:
    """Routes and rendering, over one store and one rules folder."""

    def __init__(
        self,
        store: StoreLocation,
        rules: Sequence[Path],
        refresh: int = 10,
        products: Path | None = None,
    ) -> None:
        self.stores = StorePool(store)
        self.rules = Rules(rules)
        self.refresh = refresh
        self.products = Products(products)
        self.env = make_environment("tracerules.web")
        self.env.globals["product_href"] = self.products.href
        self.cache = TtlCache(SUMMARY_TTL_S)
        self.conditions = ConditionsMemo()

    def render(
        self, request: Request, template: str, context: dict[str, Any], code: int = 200
    ) -> Response:
        state = status(self.stores.get(), time.time())
        body = self.env.get_template(template).render(
            request=request,
            path=request.url.path,
            status=state,
            refresh=self.refresh if state.running and self.refresh > 0 else None,
            rules_error=self.rules.error,
            **context,
        )
        return HTMLResponse(body, status_code=code)

    def not_found(self, request: Request, what: str) -> Response:
        return self.render(request, "missing.html", {"what": what}, 404)

    @staticmethod
    def page(request: Request) -> int:
        raw = request.query_params.get("page", "1")
        return int(raw) if raw.isdigit() else 1

    # -- pages -----------------------------------------------------------------------------

    def summary(self) -> Summary:
        """Summary counts, at most SUMMARY_TTL_S old (counting notices by status scans them)."""
        store, rules = self.stores.get(), self.rules.current()
        value: Summary = self.cache.get(id(rules), lambda: model.summary(store, rules))
        return value

    def overview(self, request: Request) -> Response:
        data = pages.overview(self.stores.get(), self.summary())
        return self.render(request, "overview.html", data)

    def triggers(self, request: Request) -> Response:
        return self.render(request, "triggers.html", {"summary": self.summary()})

    def trigger(self, request: Request) -> Response:
        trigger_id = request.path_params["trigger"]
        data = pages.trigger(
            self.stores.get(),
            self.rules.current(),
            trigger_id,
            self.page(request),
            self.conditions,
            self.summary().triggers,  # counts at most SUMMARY_TTL_S old, as on the overview
        )
        if data is None:
            return self.not_found(request, f"trigger {trigger_id}")
        return self.render(request, "trigger.html", data)

    def notices(self, request: Request) -> Response:
        params = {k: v.strip() for k, v in request.query_params.items() if k != "page"}
        data = pages.notices(self.stores.get(), self.rules.current(), params, self.page(request))
        return self.render(request, "notices.html", data)

    def notice(self, request: Request) -> Response:
        notice_id = request.path_params["notice"]
        data = pages.notice(self.stores.get(), self.rules.current(), notice_id)
        if data is None:
            return self.not_found(request, f"notice {notice_id}")
        return self.render(request, "notice.html", data)

    def log(self, request: Request) -> Response:
        return self.render(request, "log.html", pages.log(self.stores.get(), self.page(request)))

    def routes(self) -> list[Route]:
        return [
            Route("/", self.overview, methods=["GET"]),
            Route("/triggers", self.triggers, methods=["GET"]),
            Route("/triggers/{trigger}", self.trigger, methods=["GET"]),
            Route("/notices", self.notices, methods=["GET"]),
            Route("/notices/{notice:int}", self.notice, methods=["GET"]),
            Route("/log", self.log, methods=["GET"]),
            Route(PREFIX + "{path:path}", self.products.serve, methods=["GET"]),
        ]


def create_app(
    store: StoreLocation,
    rules: Sequence[Path],
    *,
    token: str | None = None,
    refresh: int = 10,
    products: Path | None = None,
) -> Guard:
    """The ASGI application; with `token`, every request must present it.

    `products` is the folder served read-only under `/products/` and linked from the pages.
    """
    dashboard = Dashboard(store, rules, refresh, products)
    loaded = dashboard.rules.current()  # load the rules and compile the templates now
    if loaded is not None and any(SKYMAP_TOPIC in t.topics for t in loaded.triggers):
        preload_skymaps()
    for name in dashboard.env.list_templates(extensions=["html"]):
        dashboard.env.get_template(name)
    app = Starlette(routes=dashboard.routes())
    return Guard(app, token)
