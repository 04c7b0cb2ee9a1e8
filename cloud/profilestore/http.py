"""HTTP plumbing of the profile store: JSON errors for every failure, gzip both ways, bodies and parameters.

Every answer is JSON. A bad request gets a 4xx ``{"error": code, "detail": text}``; only a fault of the
server or its database is a 5xx.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import hdrs, web

from profilestore.auth import AuthError
from profilestore.const import MAX_BODY_BYTES
from profilestore.jsonbody import BodyError, dumps, gunzip, parse_json
from profilestore.models import CursorError
from profilestore.storage import StorageUnavailableError

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's own HTTP errors (routing, body size) by status: our error codes.
_HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "cursor_reset",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
}
# A detail may quote a client's key names; it stays short whatever was sent.
_MAX_DETAIL_CHARS: Final = 300
# Seconds a client should wait before retrying after a 503.
_RETRY_AFTER_S: Final = "1"
_JSON_TYPE: Final = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


class ApiError(Exception):
    """Raised by a handler to answer ``status`` with ``{"error": code, "detail": detail}``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=dumps(data).encode("utf-8"), status=status, content_type="application/json", charset="utf-8"
    )


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = json_response({"error": code, "detail": detail[:_MAX_DETAIL_CHARS]}, status)
    if headers:
        response.headers.update(headers)
    return response


def accepts_gzip(request: web.Request) -> bool:
    """Whether Accept-Encoding allows gzip (by name or by ``*``, with a q above 0)."""
    named: float | None = None
    star: float | None = None
    for item in request.headers.get(hdrs.ACCEPT_ENCODING, "").split(","):
        coding, _, params = item.strip().partition(";")
        quality = 1.0
        param = params.strip().lower()
        if param.startswith("q="):
            try:
                quality = float(param[2:])
            except ValueError:
                quality = 0.0
        name = coding.strip().lower()
        if name in {"gzip", "x-gzip"}:
            named = quality
        elif name == "*":
            star = quality
    if named is not None:
        return named > 0
    return star is not None and star > 0


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
    detail = exc.reason
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        detail = f"the body is larger than {MAX_BODY_BYTES} bytes"
    headers = {"Allow": exc.headers[hdrs.ALLOW]} if hdrs.ALLOW in exc.headers else None
    return error_response(exc.status, code, detail, headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a JSON answer; responses gzip-compressed when the client accepts it."""
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.detail)
    except BodyError as exc:
        response = error_response(exc.status, exc.code, exc.detail)
    except CursorError as exc:
        response = error_response(
            410 if exc.gone else 400, "cursor_reset" if exc.gone else "bad_cursor", str(exc)
        )
    except AuthError as exc:
        headers = {"WWW-Authenticate": 'Bearer realm="profile-store"'} if exc.status == 401 else None
        response = error_response(exc.status, _HTTP_CODES[exc.status], exc.detail, headers)
    except StorageUnavailableError as exc:
        _LOGGER.warning("database unavailable: %s", exc)
        response = error_response(
            503, "unavailable", "the database is unavailable", {"Retry-After": _RETRY_AFTER_S}
        )
    except web.HTTPException as exc:
        response = _from_http_exception(exc)
    except Exception:  # the last resort: a bug must not kill the connection without an answer
        _LOGGER.exception("request %s %s failed", request.method, request.path)
        response = error_response(500, "internal", "the server failed; see its log")
    if isinstance(response, web.Response) and not response.prepared:
        response.headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
        if response.body is not None and accepts_gzip(request):
            response.enable_compression(web.ContentCoding.gzip)
    return response


async def read_json(request: web.Request) -> Any:
    """The request body as parsed JSON: identity or gzip (inflated at most to MAX_BODY_BYTES), UTF-8."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    if content_type is not None:
        media, _, params = content_type.partition(";")
        charset = params.strip().lower()
        if _JSON_TYPE.fullmatch(media.strip().lower()) is None or charset not in {"", "charset=utf-8"}:
            raise ApiError(415, "unsupported_media_type", "send application/json (UTF-8)")
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding not in {"identity", "gzip", "x-gzip"}:
        raise ApiError(415, "unsupported_media_type", f"Content-Encoding {encoding!r}: only gzip is accepted")
    body = await request.read()  # raises 413 past the application's client_max_size
    if encoding != "identity":
        body = gunzip(body, MAX_BODY_BYTES)
    elif len(body) > MAX_BODY_BYTES:
        raise BodyError(413, "payload_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not body:
        raise BodyError(400, "bad_json", "the body is empty")
    return parse_json(body)


def path_value(request: web.Request, name: str, pattern: str) -> str:
    """A path parameter that matches ``pattern``, or a 400 naming it."""
    value = request.match_info[name]
    if re.fullmatch(pattern, value) is None:  # fullmatch: "$" alone would let a final newline in
        raise ApiError(400, "bad_request", f"{name}: does not match {pattern}")
    return value


def query_value(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, "bad_request", f"{name}: given more than once")
    return values[0] if values else None


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = query_value(request, name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 7 or not low <= int(text) <= high:
        raise ApiError(400, "bad_request", f"{name}: an integer {low}..{high}")
    return int(text)
