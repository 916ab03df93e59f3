"""Errors as JSON, ``{"error": {"status": N, "message": "..."}}``, whatever raised them."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aigcguard.results import JsonResult


@dataclass(frozen=True)
class ErrorInfo(JsonResult):
    """The ``error`` object of an answer (and of a failed entry in a batch)."""

    status: int
    message: str


class ApiError(Exception):
    """A request the service refuses: the status and the message the client gets."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = headers  # e.g. Retry-After on a 503 for load

    @property
    def info(self) -> ErrorInfo:
        return ErrorInfo(self.status, self.message)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": ErrorInfo(status, message).to_dict()}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(reason: str) -> int:
    """The status for a picture that ``load_image`` refused, from its reason."""
    if reason.startswith("not a recognised image format"):
        return 415
    if "above the limit" in reason or "decompression bomb" in reason:
        return 413
    return 422


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.headers)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()]
    return error_response(422, "; ".join(parts) or "invalid request")


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # FastAPI's own 404 (unknown path) and 405 (wrong method), in our shape
    return error_response(exc.status_code, str(exc.detail))


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    # a bug, not the client's fault: still JSON, naming the exception (the traceback is logged)
    return error_response(500, f"internal error ({type(exc).__name__})")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(Exception, _internal)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
