"""The web UI: server-rendered pages over the lake, the catalog, runs, models and the gate.

Every page is a plain blocking function ``(ui, viewer, request) -> Response`` (Starlette
runs it in a worker thread); the :class:`~lakeloop.ui._access.Viewer` decides what the
request's principal may see. Pages list at most ``ui_page_size`` rows and continue with
a cursor, so nothing ever lists a whole namespace.

Two ways in:

- ``lakeloop ui`` serves one lake to its owner on the loopback interface (no login,
  every grant: like opening the lake's folder);
- the gateway mounts the same app at ``/ui`` with ``credentials``: a login form checks an
  access key and secret like a signed request does, and sets a signed, HttpOnly,
  SameSite session cookie; grants filter every page. Every POST (login, logout) carries
  a CSRF token (see ``_session``), and a session ends when its key's secret changes.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import secrets
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from lakeloop.catalog import Catalog
from lakeloop.errors import InvalidInput, LakeloopError, NotFound
from lakeloop.gateway import Credentials, Principal
from lakeloop.store import Lake
from lakeloop.ui import _pages as pages
from lakeloop.ui._access import OWNER, Viewer
from lakeloop.ui._session import COOKIE, CSRF_COOKIE, CSRF_FIELD, SessionSigner
from lakeloop.ui._templates import render

__all__ = ["UI", "create_app"]

log = logging.getLogger("lakeloop.ui")

# Pages are ours, never the lake's: scripts, styles and images come from this app only
# (thumbnails as data: URIs); nothing is framed or fetched from elsewhere.
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
_FORM_LIMIT = 16 * 1024


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""


Page = Callable[["UI", Viewer, Request], Response]


class UI:
    """The UI over one lake. Without *credentials* it serves the lake's owner (local use);
    with them, principals log in and see only what their grants allow."""

    def __init__(self, lake: Lake, credentials: Credentials | None = None) -> None:
        self.lake = lake
        self.catalog = Catalog(lake)
        self.credentials = credentials
        self.page_size = max(1, int(lake.settings["ui_page_size"]))
        self.signer = SessionSigner(lifetime=float(lake.settings["ui_session_hours"]) * 3600)
        self.app = Starlette(routes=self._routes())
        # snapshots are immutable (named by their hash): their entries and diffs can be
        # kept, so paging through a large manifest reads it once, not once per page
        self._memo: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._memo_lock = threading.Lock()

    def memo(self, key: tuple[str, ...], make: Callable[[], Any], keep: int = 4) -> Any:
        """The value of *make* for *key* (immutable things only), the last *keep* kept."""
        with self._memo_lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        value = make()
        with self._memo_lock:
            self._memo[key] = value
            while len(self._memo) > keep:
                self._memo.popitem(last=False)
        return value

    # ------------------------------------------------------------------ plumbing
    def _routes(self) -> list[Route]:
        table: list[tuple[str, Page]] = [
            ("/", pages.overview),
            ("/ns/{namespace}", pages.browse),
            ("/object/{namespace}", pages.object_page),
            ("/thumb/{namespace}", pages.thumbnail),
            ("/raw/{namespace}", pages.raw),
            ("/search", pages.search),
            ("/datasets", pages.datasets),
            ("/datasets/{dataset}", pages.dataset),
            ("/datasets/{dataset}/diff", pages.diff),
            ("/runs", pages.runs),
            ("/runs/{run_id}", pages.run),
            ("/models", pages.models),
            ("/models/{model}", pages.model),
            ("/models/{model}/decisions/{decision}", pages.decision),
            ("/serving", pages.serving),
            ("/loop", pages.loop),
        ]
        routes = [Route(path, self._page(fn), methods=["GET", "HEAD"]) for path, fn in table]
        routes += [
            Route("/static/{name}", self._static, methods=["GET", "HEAD"]),
            Route("/login", self._login, methods=["GET", "POST"]),
            Route("/logout", self._logout, methods=["POST"]),
        ]
        return routes

    @staticmethod
    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def principal(self, request: Request) -> Principal:
        """The principal of this request's session (the owner when run locally)."""
        if self.credentials is None:
            return OWNER
        session = self.signer.load(request.cookies.get(COOKIE))
        if session is None:
            raise LoginRequired
        self.credentials.refresh()
        found = self.credentials.lookup(session.access_key)
        if found is None:  # the key was deleted since the login
            raise LoginRequired
        if not self.signer.matches(session, found[1]):  # the secret changed since the login
            raise LoginRequired
        return found[0]

    def _session_csrf(self, request: Request) -> str:
        """The CSRF token of this request's session ("" without one)."""
        value = request.cookies.get(COOKIE)
        return self.signer.csrf_token(value) if value else ""

    def _page(self, fn: Page) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            try:
                viewer = Viewer(self.lake, self.catalog, self.principal(request))
                response = fn(self, viewer, request)
            except LoginRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                query = urllib.parse.urlencode({"next": target})
                response = RedirectResponse(f"{self.base(request)}/login?{query}", 303)
            except NotFound as exc:
                response = self.error(request, 404, "Not found", exc)
            except InvalidInput as exc:
                response = self.error(request, 400, "Bad request", exc)
            except LakeloopError as exc:
                response = self.error(request, 503, "Unavailable", exc)
            except Exception:
                log.exception("ui: %s failed", request.url.path)
                response = self.error(request, 500, "Internal error", "see the server log")
            response.headers.update(_SECURITY_HEADERS)
            return response

        handle.__name__ = fn.__name__
        return handle

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        user = None
        if self.credentials is not None:
            try:
                user = self.principal(request).name
            except LoginRequired:
                user = None
        html = render(
            template,
            base=self.base(request),
            user=user,
            login=self.credentials is not None,
            request_path=request.url.path,
            csrf=self._session_csrf(request) if user else "",
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})

    def error(self, request: Request, status: int, title: str, detail: object) -> HTMLResponse:
        return self.render(request, "error.html", status, title=title, detail=str(detail))

    # ------------------------------------------------------------------ static files
    def _static(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        if "/" in name or name.startswith(".") or not name:
            return Response("not found", 404)
        try:
            data = (resources.files("lakeloop.ui") / "static" / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return Response("not found", 404)
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {"cache-control": "public, max-age=3600", **_SECURITY_HEADERS}
        return Response(data, media_type=ctype, headers=headers)

    # ------------------------------------------------------------------ login
    async def _login(self, request: Request) -> Response:
        base = self.base(request)
        next_url = request.query_params.get("next") or f"{base}/"
        if not _own_page(next_url, base):
            next_url = f"{base}/"  # only pages of this UI: never an open redirect
        if self.credentials is None:
            return RedirectResponse(next_url, 303)
        # the login form's half of the double submit: a random cookie, kept while valid
        nonce = request.cookies.get(CSRF_COOKIE) or ""
        fresh = len(nonce) < 32
        if fresh:
            nonce = secrets.token_urlsafe(32)
        problem = None
        status = 200
        if request.method == "POST":
            form = await _read_form(request)
            if form is None:
                return self._refused(request, 413, "form too large")
            if fresh or not self.signer.check_csrf(nonce, _field(form, CSRF_FIELD)):
                # a post from another site (or a form older than its cookie): no login
                log.info("ui: login refused: missing or wrong CSRF token")
                return self._refused(request, 403, "the form's CSRF token is missing or wrong")
            access = _field(form, "access_key").strip()
            secret = _field(form, "secret")
            self.credentials.refresh(every=0)
            found = self.credentials.lookup(access) if access else None
            # compare even without a user, so timing does not tell which keys exist
            expected = found[1] if found else "\0" * 40
            if hmac.compare_digest(expected.encode(), secret.encode()) and found:
                response = RedirectResponse(next_url, 303)
                self._set_cookie(request, response, COOKIE, self.signer.dump(access, found[1]))
                response.delete_cookie(CSRF_COOKIE, path=f"{base}/")
                response.headers.update(_SECURITY_HEADERS)
                return response
            problem = "Unknown access key, or wrong secret."
            status = 401
            log.info("ui: failed login for access key %r", access[:32])
        html = render("login.html", base=base, user=None, login=True, problem=problem,
                      next_url=next_url, request_path=request.url.path,
                      csrf=self.signer.csrf_token(nonce))  # fmt: skip
        page = HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})
        if fresh:
            self._set_cookie(request, page, CSRF_COOKIE, nonce, max_age=3600)
        page.headers.update(_SECURITY_HEADERS)
        return page

    def _set_cookie(
        self,
        request: Request,
        response: Response,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
    ) -> None:
        """A cookie for this UI's pages only: HttpOnly, SameSite=Strict, Secure over TLS."""
        response.set_cookie(
            name,
            value,
            max_age=int(self.signer.lifetime) if max_age is None else max_age,
            path=f"{self.base(request)}/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def _refused(self, request: Request, status: int, detail: str) -> Response:
        page = self.render(request, "error.html", status, title="Refused", detail=detail)
        page.headers.update(_SECURITY_HEADERS)
        return page

    async def _logout(self, request: Request) -> Response:
        base = self.base(request)
        form = await _read_form(request)
        if form is None:
            return self._refused(request, 413, "form too large")
        session = request.cookies.get(COOKIE)
        if session and not self.signer.check_csrf(session, _field(form, CSRF_FIELD)):
            # another site cannot end a session either
            return self._refused(request, 403, "the form's CSRF token is missing or wrong")
        response = RedirectResponse(f"{base}/login", 303)
        response.delete_cookie(COOKIE, path=f"{base}/")
        response.headers.update(_SECURITY_HEADERS)
        return response

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def _read_form(request: Request) -> dict[str, list[str]] | None:
    """A posted form (``application/x-www-form-urlencoded``); None past ``_FORM_LIMIT``."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _FORM_LIMIT:
            return None
    return urllib.parse.parse_qs(raw.decode("utf-8", "replace"))


def _field(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


def _own_page(url: str, base: str) -> bool:
    """A path of this UI, and nothing a browser could read as another host (``//host``,
    ``/\\host``: browsers treat a backslash as a slash)."""
    parts = urllib.parse.urlsplit(url)
    return (
        url.startswith(f"{base}/")
        and not url.startswith("//")
        and "\\" not in url
        and not parts.scheme
        and not parts.netloc
        and all(ord(c) > 31 for c in url)
    )


def create_app(lake: Lake, credentials: Credentials | None = None) -> UI:
    """The UI as an ASGI app (see :class:`UI`)."""
    return UI(lake, credentials)


def stream_object(ns: Any, key: str, version: int) -> Iterator[bytes]:
    """The bytes of one object version in 1 MiB pieces."""
    with ns.open(key, version=version) as f:
        while True:
            piece = f.read(1 << 20)
            if not piece:
                return
            yield piece


def download(ns: Any, key: str) -> StreamingResponse:
    """A download that a browser never renders: whatever the object claims to be, it is
    sent as ``application/octet-stream`` with ``Content-Disposition: attachment`` (an
    HTML or SVG object must not run as a page of the UI)."""
    info = ns.stat(key)
    name = key.rsplit("/", 1)[-1] or "object"
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in name)
    disposition = (
        f'attachment; filename="{ascii_name}"; '
        f"filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    )
    headers = {
        "content-disposition": disposition,
        "content-length": str(info.size),
        "cache-control": "private, no-store",
        **_SECURITY_HEADERS,
    }
    return StreamingResponse(
        stream_object(ns, key, info.version), media_type="application/octet-stream", headers=headers
    )
