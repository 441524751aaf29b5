"""Who may talk to the studio: the token, the Host and Origin checks, and the security headers.

The studio drives a camera, so a page on some other site must not steer it
or read its video. On a loopback address only requests naming a loopback
host are served (a DNS-rebinding site names its own); on any other address a
token is required. The token may come as ``Authorization: Bearer T``, as
``?token=T`` (what a browser or an OBS Browser Source is given) or as the
cookie set when it came that way, so the page's own images, scripts and
calls carry it without putting it in every URL. A state-changing request
whose ``Origin`` is another site is refused; no CORS header is ever sent, so
no other origin can read a response. A body declared larger than any
request needs is refused before it is read.
"""
from __future__ import annotations

import hmac
import ipaddress
import re
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ipmcam.errors import UserError

COOKIE = "ipmcam_token"
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{8,}")  #: safe in a URL and a cookie, long enough to guess slowly
LOOPBACK_NAMES = {"localhost"}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without IPv6 brackets)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token (a UserError saying how)."""
    if not is_loopback(host) and not token:
        raise UserError(f"--host {host} lets other machines reach the studio: give a --token too "
                        "(they then open the printed URL, which carries it)")
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        raise UserError("--token must be at least 8 characters from A-Z a-z 0-9 . _ ~ -")


class Guard:
    """ASGI middleware: the checks above, then the app, with the security headers added to every response."""

    def __init__(self, app: ASGIApp, token: str | None = None, loopback_only: bool = True,
                 max_body: int | None = None) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only
        self.max_body = max_body

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.loopback_only and not is_loopback(urlsplit(f"//{host}").hostname or ""):
            return 403, f"host {host!r} is not served: open the studio at the URL it printed"
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin is not None and urlsplit(origin).netloc != host:
            return 403, "requests from other sites are refused"
        if self.token is not None and not any(hmac.compare_digest(t.encode(), self.token.encode())
                                              for t in self._tokens(scope, headers)):
            return 401, "missing or wrong token: open the URL `ipmcam studio` printed"
        length = headers.get("content-length", "")
        if self.max_body is not None and length.isdigit() and int(length) > self.max_body:
            return 413, f"the request is over {self.max_body / 1048576:.0f} MB"
        return None

    @staticmethod
    def _tokens(scope: Scope, headers: Headers) -> list[str]:
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given.append(value)
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        if cookie is not None:
            given.append(cookie)
        return given

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, error = refusal
            response = JSONResponse({"error": error}, status, headers=SECURITY_HEADERS)
            await response(scope, receive, send)
            return
        remember = self.token is not None and b"token=" in scope.get("query_string", b"")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if remember:
                    headers.append("set-cookie", f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict")
            await send(message)

        await self.app(scope, receive, send_with_headers)
