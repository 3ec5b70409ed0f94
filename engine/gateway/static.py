"""The files the gateway serves: the web SDK (/sdk/declic.js) and the demo page (/demo).

They live in ``sdk/web/`` of the repository; a built wheel ships them inside the package
as ``engine/_sdk/`` (pyproject's force-include), as the schemas are. A file is read again
when it changes on disk, and served with its ETag (a 304 when the client has it).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from engine.gateway.errors import ApiError

SDK_FILE = "declic.js"
DEMO_FILE = "demo.html"
# Browsers revalidate the SDK after this (with its ETag: a 304 when unchanged).
CACHE_CONTROL = "public, max-age=300"


def sdk_dir() -> Path:
    """Return the directory holding the web SDK and the demo page."""
    override = os.environ.get("DECLIC_SDK_DIR")
    if override:
        return Path(override)
    package = Path(__file__).resolve().parent.parent
    bundled = package / "_sdk"
    return bundled if bundled.is_dir() else package.parent / "sdk" / "web"


@dataclass(frozen=True, slots=True)
class _Loaded:
    stamp: tuple[int, int]  # modification time (ns) and size
    body: bytes
    etag: str


class StaticFile:
    """One file served as is, with Cache-Control and an ETag."""

    def __init__(self, name: str, content_type: str, what: str) -> None:
        self.name = name
        self.content_type = content_type
        self.what = what  # "the web SDK", in the 404's words
        self._loaded: _Loaded | None = None

    @property
    def path(self) -> Path:
        return sdk_dir() / self.name

    def load(self) -> _Loaded:
        """Return the file's content and ETag; raise ApiError 404 if it is missing."""
        path = self.path
        try:
            status = path.stat()
            stamp = (status.st_mtime_ns, status.st_size)
            if self._loaded is not None and self._loaded.stamp == stamp:
                return self._loaded
            body = path.read_bytes()
        except OSError:
            raise ApiError(
                404,
                "not_found",
                f"{self.what} is not in this installation: {path} is missing",
            ) from None
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self._loaded = _Loaded(stamp, body, etag)
        return self._loaded

    async def handle(self, request: web.Request) -> web.Response:
        """Answer a GET of the file: 200, or 304 when the client's ETag matches."""
        loaded = self.load()
        headers = {hdrs.CACHE_CONTROL: CACHE_CONTROL, hdrs.ETAG: loaded.etag}
        asked = request.headers.get(hdrs.IF_NONE_MATCH, "")
        if loaded.etag in {tag.strip() for tag in asked.split(",")}:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=loaded.body, content_type=self.content_type, charset="utf-8", headers=headers
        )
