"""Who sent a request, and what to send back to them: the client's address (behind
trusted proxies), whether it came over TLS, the session cookie, and a safe redirect."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "declic_console"
LOGIN_COOKIE = "declic_console_login"
HOME = "/engagements"

Networks = Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _in(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: Networks) -> bool:
    return address is not None and any(address in network for network in networks)


def from_trusted_proxy(request: web.Request, proxies: Networks) -> bool:
    """Return whether the request's peer is one of the trusted proxies."""
    return _in(_address(request.remote), proxies)


def client_address(request: web.Request, proxies: Networks) -> str:
    """Return the client's address: the peer's, or, behind trusted proxies, the last address
    of X-Forwarded-For that is not one of them."""
    proxies = tuple(proxies)
    peer = request.remote or "unknown"
    if not _in(_address(peer), proxies):
        return peer
    forwarded = [
        hop.strip()
        for line in request.headers.getall("X-Forwarded-For", [])
        for hop in line.split(",")
    ]
    for hop in reversed(forwarded):
        address = _address(hop)
        if address is None:
            break
        if not _in(address, proxies):
            return str(address)
    return peer


def is_secure(request: web.Request, trusted_proxy: bool) -> bool:
    """Return whether the browser reached the console over TLS (itself or its proxy)."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return trusted_proxy and forwarded == "https"


def set_session_cookie(
    response: web.StreamResponse, request: web.Request, session_id: str, trusted_proxy: bool
) -> None:
    """Set the session cookie: HttpOnly, SameSite=Lax, Path=/, Secure under TLS."""
    set_private_cookie(response, request, (COOKIE, session_id), "/", trusted_proxy)


def set_private_cookie(
    response: web.StreamResponse,
    request: web.Request,
    cookie: tuple[str, str],
    path: str,
    trusted_proxy: bool,
) -> None:
    """Set a cookie no script reads and no other site sends: HttpOnly, SameSite=Lax,
    Secure under TLS."""
    name, value = cookie
    response.set_cookie(
        name,
        value,
        path=path,
        httponly=True,
        samesite="Lax",
        secure=is_secure(request, trusted_proxy),
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")


def safe_next(value: str | None) -> str:
    """Return `value` if it is a path of this site, else the home page (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return HOME
    if any(ord(char) < 32 or ord(char) == 127 or char == "\\" for char in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    return value
