"""FastAPI dependencies: the app's shared state (settings, the models loaded once per process),
readiness, the API key check, and reading the pictures of a request.

Endpoints declare what they need as annotated parameters, resolved in the order given::

    def endpoint(slot: Admitted, picture: Upload, state: Ready): ...
    # 503 when the queue is full (the body drained), then 400/413/415, then 503 loading
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Request

from aigcguard.service.http.admission import Admission
from aigcguard.service.http.config import ServiceConfig
from aigcguard.service.http.errors import ApiError, status_of
from aigcguard.service.http.idempotency import IdempotencyCache
from aigcguard.service.http.limits import check_deadline, time_left

if TYPE_CHECKING:
    import torch

    from aigcguard.service.check import Checker

#: one picture of a request: its file name (``upload`` for a raw body) and its bytes
Picture = tuple[str, bytes]

log = logging.getLogger("aigcguard.service")


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
    admission: Admission = field(init=False)

    def __post_init__(self):
        self.idempotent = IdempotencyCache(self.config.idempotency_entries)
        self.admission = Admission(self.config.queue_length)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the shared models, waiting no longer than the request's deadline (503 then):
        a request whose answer was already given does not start its work."""
        left = time_left()
        if not self.lock.acquire(timeout=-1 if left is None else max(left, 0.0)):
            raise ApiError(503, "busy: the request ran past its deadline waiting for its turn")
        start = time.monotonic()
        try:
            check_deadline()
            yield
        finally:
            self.lock.release()
            self.admission.held(time.monotonic() - start)


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


# The small dependencies are coroutines: they run on the event loop, so that the probes
# answer even when every worker thread is busy with a check.
async def app_state(request: Request) -> State:
    return request.app.state.aigc


AppState = Annotated[State, Depends(app_state)]


async def settings(state: AppState) -> ServiceConfig:
    return state.config


Settings = Annotated[ServiceConfig, Depends(settings)]


def ready(state: AppState) -> State:
    """The state, once the models are loaded; 503 before."""
    if not state.ready.is_set():
        why = state.load_error or "models are still loading"
        raise ApiError(503, f"not ready: {why}")
    return state


async def _ready(state: AppState) -> State:
    return ready(state)


Ready = Annotated[State, Depends(_ready)]


async def _admitted(request: Request, state: AppState) -> AsyncIterator[None]:
    refused = state.admission.enter()
    if refused is not None:
        # The body is read and dropped before the answer (nothing is decoded or queued):
        # a server that answers and closes while the client is still uploading resets the
        # connection, and the client loses the 503 (measured: 520 of 970 refusals to 50
        # clients posting 512 px JPEGs came back as connection errors, without Retry-After).
        async for _ in request.stream():  # the body's size and pace limits still hold
            pass
        raise refused
    try:
        yield
    finally:
        state.admission.leave()


#: a place in this worker's bounded queue (503 with Retry-After when full): the first
#: dependency of every route that holds the models, so a refused request is not decoded
Admitted = Annotated[None, Depends(_admitted)]


def key_matches(headers: Iterable[tuple[bytes, bytes]], keys: Iterable[bytes]) -> bool:
    """Whether the raw request headers carry one of ``keys`` (``X-API-Key``, else
    ``Authorization: Bearer``). Compared as bytes, so any header value (non-ASCII, not
    UTF-8) is simply wrong; the configured keys are UTF-8. The middleware asks this for every
    path but the probes, before routing and the body limit."""
    given = auth = b""
    for name, value in headers:
        name = name.lower()
        if name == b"x-api-key" and not given:
            given = value.strip()
        elif name == b"authorization" and not auth:
            auth = value.strip()
    if not given and auth[:7].lower() == b"bearer ":
        given = auth[7:].strip()
    if not given:
        return False
    found = False
    for key in keys:  # every key compared: the time taken does not tell which one matched
        found |= hmac.compare_digest(given, key)
    return found


def api_key_valid(request: Request, keys: tuple[str, ...]) -> bool:
    """Whether the request carries one of ``keys`` (see :func:`key_matches`)."""
    return key_matches(request.scope["headers"], [k.encode("utf-8") for k in keys])


async def read_pictures(request: Request, field_name: str, limit: int) -> list[Picture]:
    """The pictures of a request: multipart parts named ``field_name`` or the raw body."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        try:
            form = await request.form(max_part_size=limit)
        except ApiError:  # the body limit or pace, from the middleware's receive channel
            raise
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
    with picture_errors(name):
        try:
            limits = {"max_pixels": config.max_pixels}
            if config.max_side is not None:
                limits["max_side"] = config.max_side
            if config.max_aspect is not None:
                limits["max_aspect"] = config.max_aspect
            return load_image(data, name=name, **limits).pixels
        except ImageLoadError as exc:
            raise ApiError(status_of(exc.reason), str(exc)) from None


@contextlib.contextmanager
def picture_errors(name: str) -> Iterator[None]:
    """The error boundary around the work on one user picture: an unexpected exception is
    that picture's 422 naming the exception (its traceback goes to the log), a MemoryError
    its 413, never a 500 that would hide which input did it (in a batch: that picture's
    entry, the others go on)."""
    try:
        yield
    except ApiError:
        raise
    except MemoryError:
        raise ApiError(413, f"{name}: too large to process in the memory available") from None
    except Exception as exc:
        log.exception("unexpected error on the picture %r", name)
        raise ApiError(422, f"{name}: cannot be processed ({type(exc).__name__}: {exc})") from None
