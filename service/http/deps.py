"""FastAPI dependencies: the app's shared state (settings, the models loaded once per process),
readiness, the API key check, and reading the pictures of a request.

Endpoints declare what they need as annotated parameters, resolved in the order given::

    def endpoint(picture: Upload, state: Ready): ...   # 400/413/415 first, then 503
"""

from __future__ import annotations

import contextlib
import hmac
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Request

from aigcguard.service.http.config import ServiceConfig
from aigcguard.service.http.errors import ApiError, status_of
from aigcguard.service.http.idempotency import IdempotencyCache

if TYPE_CHECKING:
    import torch

    from aigcguard.service.check import Checker

#: one picture of a request: its file name (``upload`` for a raw body) and its bytes
Picture = tuple[str, bytes]


@dataclass
class State:
    """What the app shares between requests (``app.state.aigc``)."""

    config: ServiceConfig
    device: str = "auto"
    checker: Checker | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    load_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # the models are shared
    idempotent: IdempotencyCache = field(init=False)

    def __post_init__(self):
        self.idempotent = IdempotencyCache(self.config.idempotency_entries)


def load_models(state: State) -> None:
    """The checker (detectors, ledger, index), once per process; a failure is kept for
    ``/readyz`` to report, never a crash of the process."""
    from aigcguard.service.check import Checker

    try:
        c = state.config
        state.checker = Checker(
            key=c.watermark_key,
            ledger=c.ledger,
            index=c.index,
            detector=c.detector,
            trust=c.trust,
            device=state.device,
        )
        state.ready.set()
    except Exception as exc:  # reported by /readyz
        state.load_error = f"{type(exc).__name__}: {exc}"


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    """Load the models in a background thread, so that the process answers /healthz (and
    /readyz with 503) at once; close them at shutdown."""
    state: State = app.state.aigc
    threading.Thread(target=load_models, args=(state,), daemon=True).start()
    yield
    if state.checker is not None:
        state.checker.close()


def app_state(request: Request) -> State:
    return request.app.state.aigc


AppState = Annotated[State, Depends(app_state)]


def settings(state: AppState) -> ServiceConfig:
    return state.config


Settings = Annotated[ServiceConfig, Depends(settings)]


def ready(state: AppState) -> State:
    """The state, once the models are loaded; 503 before."""
    if not state.ready.is_set():
        why = state.load_error or "models are still loading"
        raise ApiError(503, f"not ready: {why}")
    return state


Ready = Annotated[State, Depends(ready)]


def api_key_valid(request: Request, keys: tuple[str, ...]) -> bool:
    """Whether the request carries one of ``keys`` (``X-API-Key`` or ``Bearer``). The
    middleware asks this for every ``/v1/`` path, before routing and the body limit."""
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return any(hmac.compare_digest(given, k) for k in keys)


async def read_pictures(request: Request, field_name: str, limit: int) -> list[Picture]:
    """The pictures of a request: multipart parts named ``field_name`` or the raw body."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        try:
            form = await request.form(max_part_size=limit)
        except Exception as exc:  # malformed multipart: the client's fault
            raise ApiError(400, f"cannot parse the multipart body ({exc})") from None
        items = []
        for upload in form.getlist(field_name):
            if isinstance(upload, str):
                raise ApiError(422, f"field {field_name!r} must be a file, not text")
            data = await upload.read(limit + 1)
            if len(data) > limit:
                raise ApiError(413, f"a file is above the limit of {limit:,} bytes")
            items.append((upload.filename or "upload", data))
        if not items:
            raise ApiError(400, f"no multipart field {field_name!r} with a picture")
        return items
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the body is above the limit of {limit:,} bytes")
    if not body:
        raise ApiError(400, "empty body: send a picture as the body or as multipart 'file'")
    return [("upload", bytes(body))]


async def upload(request: Request, config: Settings) -> Picture:
    """One picture: multipart field ``file`` (the first) or the raw body."""
    return (await read_pictures(request, "file", config.max_body_bytes))[0]


async def uploads(request: Request, config: Settings) -> list[Picture]:
    """Several pictures: multipart fields ``files``, at most ``max_batch``."""
    items = await read_pictures(request, "files", config.max_body_bytes)
    if len(items) > config.max_batch:
        raise ApiError(413, f"{len(items)} files, above the batch limit of {config.max_batch}")
    return items


Upload = Annotated[Picture, Depends(upload)]
Uploads = Annotated[list[Picture], Depends(uploads)]


def decode(picture: Picture, config: ServiceConfig) -> torch.Tensor:
    """The uint8 3 x H x W pixels; a picture ``load_image`` refuses is a 413, 415 or 422."""
    from aigcguard.imageio import ImageLoadError, load_image

    name, data = picture
    try:
        return load_image(data, name=name, max_pixels=config.max_pixels).pixels
    except ImageLoadError as exc:
        raise ApiError(status_of(exc.reason), str(exc)) from None
