"""Content repository endpoints: upload, create, download, thumbnail, config.

Authenticated reads live under /_matrix/client/v1/media; uploads and the
deprecated unauthenticated reads under /_matrix/media/{r0,v3} (create under
/_matrix/media/v1). Rules live in services/media.py; this module only turns
HTTP into calls and Downloads into responses with the safety headers.
"""

from __future__ import annotations

from typing import Any

from quart import Response, request

from homeserver import errors
from homeserver.api.http import MultiPrefixBlueprint, authenticated, hs
from homeserver.services.auth import Requester
from homeserver.services.media import Download

# Served with every piece of media: never run it as a page, never sniff it.
CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
    "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)
CACHE_AUTHENTICATED = "private, max-age=31536000, immutable"
CACHE_PUBLIC = "public, max-age=31536000, immutable"

legacy = MultiPrefixBlueprint("media_legacy", ["/_matrix/media/r0", "/_matrix/media/v3"])
v1 = MultiPrefixBlueprint("media_v1", ["/_matrix/media/v1"])
client = MultiPrefixBlueprint("client_media", ["/_matrix/client/v1/media"])


def _int_arg(name: str, *, required: bool = False) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if required:
            raise errors.missing_param(f"'{name}' is required")
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.invalid_param(f"'{name}' must be an integer") from None


def _bool_arg(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise errors.invalid_param(f"'{name}' must be true or false")


def _serve(download: Download, *, authenticated_route: bool) -> Response:
    response = Response(download.chunks, status=200, content_type=download.content_type)
    response.headers["Content-Length"] = str(download.size)
    response.headers["Content-Disposition"] = download.disposition
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["Cache-Control"] = CACHE_AUTHENTICATED if authenticated_route else CACHE_PUBLIC
    return response


# -- uploads -------------------------------------------------------------------
@legacy.route("/upload", methods=["POST"])
@authenticated
async def upload(who: Requester) -> Any:
    uri = await hs().media.upload(
        who,
        request.body,
        content_length=request.content_length,
        content_type=request.headers.get("Content-Type"),
        filename=request.args.get("filename"),
    )
    return {"content_uri": uri}


@legacy.route("/upload/<server_name>/<media_id>", methods=["PUT"])
@authenticated
async def upload_to(who: Requester, server_name: str, media_id: str) -> Any:
    await hs().media.upload_to(
        who,
        server_name,
        media_id,
        request.body,
        content_length=request.content_length,
        content_type=request.headers.get("Content-Type"),
        filename=request.args.get("filename"),
    )
    return {}


@v1.route("/create", methods=["POST"])
@authenticated
async def create(who: Requester) -> Any:
    return await hs().media.create(who)


# -- configuration --------------------------------------------------------------
@client.route("/config")
@legacy.route("/config")
@authenticated
async def media_config(who: Requester) -> Any:
    return hs().media.public_config()


# -- downloads --------------------------------------------------------------------
async def _download(server_name: str, media_id: str, filename: str | None, *, authenticated_route: bool) -> Any:
    download = await hs().media.download(
        server_name,
        media_id,
        authenticated=authenticated_route,
        timeout_ms=_int_arg("timeout_ms"),
        filename=filename,
    )
    return _serve(download, authenticated_route=authenticated_route)


@client.route("/download/<server_name>/<media_id>")
@authenticated
async def download(who: Requester, server_name: str, media_id: str) -> Any:
    return await _download(server_name, media_id, None, authenticated_route=True)


@client.route("/download/<server_name>/<media_id>/<file_name>")
@authenticated
async def download_named(who: Requester, server_name: str, media_id: str, file_name: str) -> Any:
    return await _download(server_name, media_id, file_name, authenticated_route=True)


@legacy.route("/download/<server_name>/<media_id>")
async def download_unauthenticated(server_name: str, media_id: str) -> Any:
    return await _download(server_name, media_id, None, authenticated_route=False)


@legacy.route("/download/<server_name>/<media_id>/<file_name>")
async def download_named_unauthenticated(server_name: str, media_id: str, file_name: str) -> Any:
    return await _download(server_name, media_id, file_name, authenticated_route=False)


# -- thumbnails ---------------------------------------------------------------------
async def _thumbnail(server_name: str, media_id: str, *, authenticated_route: bool) -> Any:
    width = _int_arg("width", required=True)
    height = _int_arg("height", required=True)
    assert width is not None and height is not None
    download = await hs().media.thumbnail(
        server_name,
        media_id,
        width=width,
        height=height,
        method=request.args.get("method", "scale"),
        animated=_bool_arg("animated"),
        authenticated=authenticated_route,
        timeout_ms=_int_arg("timeout_ms"),
    )
    return _serve(download, authenticated_route=authenticated_route)


@client.route("/thumbnail/<server_name>/<media_id>")
@authenticated
async def thumbnail(who: Requester, server_name: str, media_id: str) -> Any:
    return await _thumbnail(server_name, media_id, authenticated_route=True)


@legacy.route("/thumbnail/<server_name>/<media_id>")
async def thumbnail_unauthenticated(server_name: str, media_id: str) -> Any:
    return await _thumbnail(server_name, media_id, authenticated_route=False)
