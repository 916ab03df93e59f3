"""What every request passes before routing: the API key and the declared body size.

A middleware rather than a dependency so that an unauthorised request gets 401 whatever it
asks for (an unknown path or a wrong method included), and an oversized one 413 before its
body is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from aigcguard.service.http.deps import api_key_valid
from aigcguard.service.http.errors import ApiError, error_response

#: paths below this need an API key when keys are configured; the probes do not
PROTECTED = "/v1/"


async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
    config = request.app.state.aigc.config
    path = request.url.path
    if (
        config.api_keys
        and path.startswith(PROTECTED)
        and not api_key_valid(request, config.api_keys)
    ):
        return error_response(401, "a valid API key is required (X-API-Key or Bearer)")
    length = request.headers.get("content-length")
    if length is not None:
        try:
            too_big = int(length) > config.max_body_bytes
        except ValueError:
            return error_response(400, "Content-Length is not a number")
        if too_big:
            return error_response(
                413, f"the body is above the limit of {config.max_body_bytes:,} bytes"
            )
    try:
        return await call_next(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
