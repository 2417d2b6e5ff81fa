"""The dashboard's routes, on the same router as the API (``/dashboard...``, no bearer token: the
session cookie of ``signin.py`` instead).

Pages are rendered on the server (Jinja2, autoescaped); ``static/dashboard.js`` re-fetches the open
page's ``<main>`` every two seconds (``X-Dpvault-Partial: 1``) so running jobs and failures appear
without a reload. Every request the dashboard's pages send is a same-origin GET, except sign-out
(a POST with a per-session CSRF token and an Origin check). A strict Content-Security-Policy allows
nothing but this origin's own files: no CDN, no inline script.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2
import structlog
from markupsafe import Markup

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, Reply
from dpvault.arm.routing import Router
from dpvault.dashboard import signin
from dpvault.dashboard.views import Views, size, when
from dpvault.identity.keys import SigningKey
from dpvault.observability.storage import Storage
from dpvault.services import Services

log = structlog.get_logger("dpvault.dashboard")

HTML = "text/html; charset=utf-8"
REFRESH_MS = 2000
_SECURITY = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_STATIC_TYPES = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The assets, read once from the package (a request's name only ever selects one of these)."""
    folder = resources.files("dpvault.dashboard") / "static"
    return {name: ((folder / name).read_bytes(), kind) for name, kind in _STATIC_TYPES.items()}


class DashboardRoutes:
    def __init__(self, svc: Services, key: SigningKey, *, storage: Storage, secure: bool) -> None:
        self.svc = svc
        self.key = key
        self.secure = secure
        self.cookie = signin.cookie_name(secure)
        self.views = Views(svc, storage)
        self.static = _load_static()
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("dpvault.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["size"] = size

    @property
    def identity_dir(self) -> Any:
        return self.svc.settings.identity_dir

    # -- plumbing ----------------------------------------------------------------------------

    def _session(self, call: Call) -> signin.Session | None:
        raw = call.headers.get("cookie")
        if not raw:
            return None
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(raw)
        except CookieError:
            return None
        morsel = cookies.get(self.cookie)
        return signin.read_session(self.key, morsel.value if morsel else None)

    def _html(self, status: int, body: str, headers: dict[str, str] | None = None) -> Reply:
        return Reply(status, body.encode(), {**_SECURITY, **(headers or {})}, content_type=HTML)

    def _page(
        self,
        call: Call,
        template: str,
        context: dict[str, Any],
        *,
        title: str,
        crumbs: list[tuple[str, str | None]],
        session: signin.Session | None,
        status: int = 200,
        live: bool = True,
    ) -> Reply:
        main = self.env.get_template(template).render(**context, now=when(self.svc.now()))
        if call.headers.get("x-dpvault-partial") == "1":
            return self._html(status, main)
        inner = Markup(main)  # noqa: S704 - the output of our own autoescaped template
        page = self.env.get_template("base.html").render(
            title=title, crumbs=crumbs, session=session, main=inner, live=REFRESH_MS if live else None
        )
        return self._html(status, page)

    def _signin(self, call: Call, problem: str | None = None) -> Reply:
        return self._page(
            call, "signin.html", {"problem": problem}, title="Sign in", crumbs=[], session=None, status=401,
            live=False,
        )  # fmt: skip

    def _authenticated(
        self, handler: Callable[[Call, signin.Session], Awaitable[Reply]]
    ) -> Callable[[Call], Awaitable[Reply]]:
        async def run(call: Call) -> Reply:
            session = self._session(call)
            if session is None:
                return self._signin(call)
            return await handler(call, session)

        return run

    def _not_found(self, call: Call, session: signin.Session) -> Reply:
        # Another tenant's vault answers exactly like a missing one.
        return self._page(
            call, "signin.html", {"problem": "There is no such vault or backup instance in this tenant's subscriptions."},
            title="Not found", crumbs=[], session=session, status=404, live=False,
        )  # fmt: skip

    # -- sign-in -----------------------------------------------------------------------------

    async def login(self, call: Call) -> Reply:
        tenant = signin.redeem_code(self.identity_dir, call.query.get("code", ""))
        if tenant is None:
            log.info("dashboard sign-in refused")
            return self._signin(
                call, "This sign-in link was used already, has expired, or is not one of this server's."
            )
        _, value = signin.new_session(self.key, tenant)
        log.info("dashboard sign-in", tenant=tenant)
        return self._html(
            303,
            "",
            {
                "Location": "/dashboard",
                "Set-Cookie": signin.set_cookie(self.cookie, value, secure=self.secure),
            },
        )

    async def logout(self, call: Call) -> Reply:
        session = self._session(call)
        origin = call.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != urlsplit(call.base_url).netloc:
            raise errors.ArmError(
                403, "CrossOriginRequestRefused", "Sign-out must come from the dashboard itself."
            )
        form = parse_qs((await call.body()).decode("latin-1"))
        if session is None or form.get("csrf", [""])[0] != session.csrf:
            raise errors.ArmError(403, "InvalidCsrfToken", "The sign-out form is not this session's.")
        cleared = signin.set_cookie(self.cookie, "", secure=self.secure, max_age=0)
        return self._html(303, "", {"Location": "/dashboard", "Set-Cookie": cleared})

    # -- pages -------------------------------------------------------------------------------

    async def overview(self, call: Call, session: signin.Session) -> Reply:
        async with self.svc.store.read() as tx:
            context = await self.views.overview(tx, session.tenant)
        return self._page(call, "overview.html", context, title="Overview", crumbs=[], session=session)

    async def _vault_row(self, call: Call, session: signin.Session) -> Any:
        p = call.params
        try:
            sub = ids.check_subscription(p["subscriptionId"])
            rg = ids.check_resource_group(p["resourceGroupName"])
            name = ids.check_resource_name(p["vaultName"], "backup vault")
        except errors.ArmError:
            return None
        async with self.svc.store.read() as tx:
            return await self.views.vault(tx, session.tenant, sub, rg, name)

    async def vault(self, call: Call, session: signin.Session) -> Reply:
        row = await self._vault_row(call, session)
        if row is None:
            return self._not_found(call, session)
        async with self.svc.store.read() as tx:
            context = await self.views.vault_page(tx, row)
        return self._page(
            call, "vault.html", context, title=row.name, crumbs=[(row.name, None)], session=session
        )

    async def instance(self, call: Call, session: signin.Session) -> Reply:
        row = await self._vault_row(call, session)
        if row is None:
            return self._not_found(call, session)
        try:
            name = ids.check_resource_name(call.params["backupInstanceName"], "backup instance")
        except errors.ArmError:
            return self._not_found(call, session)
        async with self.svc.store.read() as tx:
            context = await self.views.instance_page(tx, row, name)
        if context is None:
            return self._not_found(call, session)
        crumbs = [(row.name, context["vault_link"]), (context["instance"].name, None)]
        return self._page(
            call, "instance.html", context, title=context["instance"].name, crumbs=crumbs, session=session
        )

    async def asset(self, call: Call) -> Reply:
        found = self.static.get(call.params["name"])
        if found is None:
            return self._html(404, "not found")
        body, kind = found
        return Reply(200, body, content_type=kind)

    def add_to(self, router: Router) -> None:
        router.add("/dashboard", {"GET": self._authenticated(self.overview)}, auth=False)
        router.add("/dashboard/login", {"GET": self.login}, auth=False)
        router.add("/dashboard/logout", {"POST": self.logout}, auth=False)
        router.add("/dashboard/static/{name}", {"GET": self.asset}, auth=False)
        vault = (
            "/dashboard/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/vaults/{vaultName}"
        )
        router.add(vault, {"GET": self._authenticated(self.vault)}, auth=False)
        router.add(
            vault + "/instances/{backupInstanceName}", {"GET": self._authenticated(self.instance)}, auth=False
        )
