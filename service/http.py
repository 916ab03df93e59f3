"""The HTTP service: the library's checks behind FastAPI, models loaded once and shared.

    aigc serve [--host 127.0.0.1] [--port 8000] [--config service.toml]

Endpoints (OpenAPI at ``/docs``): ``POST /v1/check`` (one picture, as multipart field ``file``
or as the raw body), ``POST /v1/check/batch`` (multipart fields ``files``),
``POST /v1/watermark/embed`` (returns the marked PNG; honours ``Idempotency-Key``),
``POST /v1/watermark/detect``, ``POST /v1/similar``, ``GET /healthz`` (the process answers),
``GET /readyz`` (503 until the models and the index are loaded).

Errors are JSON, ``{"error": {"status": N, "message": "..."}}``: 400 a request that cannot be
used, 401 a missing or wrong API key (when keys are configured), 413 a body or a picture above
the limits, 404 an unknown path or a feature this service was not configured with (similarity
without an index), 415 not a picture, 422 a picture that cannot be decoded or a bad field,
503 not ready.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves endpoint annotations here

#: fields of the config file's ``[service]`` table, with their defaults
DEFAULTS = {
    "api_keys": [],
    "max_body_bytes": 25 * 1024 * 1024,
    "max_pixels": 40_000_000,
    "max_batch": 16,
    "watermark_key": None,  # the public default key when unset
    "ledger": None,
    "index": None,
    "detector": "auto",
    "trust": [],
    "idempotency_entries": 1024,
}


@dataclass(frozen=True)
class ServiceConfig:
    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULTS["max_body_bytes"]
    max_pixels: int = DEFAULTS["max_pixels"]
    max_batch: int = DEFAULTS["max_batch"]
    watermark_key: str | None = None
    ledger: str | None = None
    index: str | None = None
    detector: str = "auto"
    trust: tuple[str, ...] = ()
    idempotency_entries: int = DEFAULTS["idempotency_entries"]

    @classmethod
    def load(cls, path: str | Path) -> ServiceConfig:
        """A TOML (or JSON) file with a ``[service]`` table; relative paths are taken from the
        file's folder. Unknown fields are refused (a typo must not silently drop a limit)."""
        from aigcguard.fileio import read_config

        path = Path(path)
        raw = read_config(path, "service config")
        table = raw.get("service", raw)
        unknown = sorted(set(table) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"{path}: unknown service settings {unknown}")

        def rel(p):
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else path.parent / q)

        values = dict(table)
        for name in ("ledger", "index"):
            if values.get(name):
                values[name] = rel(values[name])
        values["trust"] = tuple(rel(t) for t in values.get("trust", []))
        values["api_keys"] = tuple(str(k) for k in values.get("api_keys", []))
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from None


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class _State:
    """What the app shares between requests."""

    config: ServiceConfig
    checker: Any = None
    ready: threading.Event = field(default_factory=threading.Event)
    load_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    idempotent: OrderedDict = field(default_factory=OrderedDict)


def _load_models(state: _State, device: str) -> None:
    from aigcguard.service.check import Checker

    try:
        c = state.config
        state.checker = Checker(
            key=c.watermark_key,
            ledger=c.ledger,
            index=c.index,
            detector=c.detector,
            trust=c.trust,
            device=device,
        )
        state.ready.set()
    except Exception as exc:  # reported by /readyz, never a crash of the process
        state.load_error = f"{type(exc).__name__}: {exc}"


def _status_of(reason: str) -> int:
    if reason.startswith("not a recognised image format"):
        return 415
    if "above the limit" in reason or "decompression bomb" in reason:
        return 413
    return 422


def create_app(config: ServiceConfig = ServiceConfig(), *, device: str = "auto"):
    """The FastAPI application. Models load in a background thread at start-up; requests that
    need them get 503 until ``/readyz`` says ready."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    state = _State(config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loader = threading.Thread(target=_load_models, args=(state, device), daemon=True)
        loader.start()
        yield
        if state.checker is not None:
            state.checker.close()

    app = FastAPI(
        title="aigc-guard",
        summary="Where did this image come from? Watermarks, provenance, copies, detection.",
        lifespan=lifespan,
    )
    app.state.aigc = state

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        parts = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()]
        return error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        if config.api_keys and path.startswith("/v1/"):
            given = request.headers.get("x-api-key") or ""
            auth = request.headers.get("authorization", "")
            if not given and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not any(hmac.compare_digest(given, k) for k in config.api_keys):
                return error(401, "a valid API key is required (X-API-Key or Bearer)")
        length = request.headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > config.max_body_bytes
            except ValueError:
                return error(400, "Content-Length is not a number")
            if too_big:
                return error(413, f"the body is above the limit of {config.max_body_bytes:,} bytes")
        try:
            return await call_next(request)
        except ApiError as exc:
            return error(exc.status, exc.message)

    # ---- helpers

    def need_ready():
        if not state.ready.is_set():
            why = state.load_error or "models are still loading"
            raise ApiError(503, f"not ready: {why}")
        return state.checker

    async def read_upload(request: Request, field_name: str = "file") -> list[tuple[str, bytes]]:
        """The pictures of a request: multipart parts named ``field_name`` or the raw body."""
        ctype = request.headers.get("content-type", "")
        limit = config.max_body_bytes
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

    def decode(name: str, data: bytes):
        from aigcguard.imageio import ImageLoadError, load_image

        try:
            return load_image(data, name=name, max_pixels=config.max_pixels).pixels
        except ImageLoadError as exc:
            raise ApiError(_status_of(exc.reason), str(exc)) from None

    def check_one(name: str, data: bytes) -> dict:
        checker = need_ready()
        pixels = decode(name, data)
        # metadata signals read files: the bytes go to a private temporary file
        fd, tmp = tempfile.mkstemp(prefix="aigc-check-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            with state.lock:  # the index and detectors are shared
                result = checker.check(pixels, tmp, on_disk=True)
        finally:
            Path(tmp).unlink(missing_ok=True)
        d = result.to_dict()
        d["path"] = name
        return d

    # ---- endpoints

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        if not state.ready.is_set():
            why = state.load_error or "loading models"
            return error(503, f"not ready: {why}")
        return {"status": "ready"}

    @app.post("/v1/check")
    async def check(request: Request):
        """Every signal about one picture, and the summary (see `aigc check`)."""
        [(name, data)] = (await read_upload(request))[:1]
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(check_one, name, data)

    @app.post("/v1/check/batch")
    async def check_batch(request: Request):
        """Several pictures (multipart field ``files``); a bad one gets its own error entry."""
        from starlette.concurrency import run_in_threadpool

        items = await read_upload(request, "files")
        if len(items) > config.max_batch:
            raise ApiError(413, f"{len(items)} files, above the batch limit of {config.max_batch}")
        need_ready()
        out = []
        for name, data in items:
            try:
                out.append(await run_in_threadpool(check_one, name, data))
            except ApiError as exc:
                out.append({"path": name, "error": {"status": exc.status, "message": exc.message}})
        return {"results": out}

    @app.post("/v1/watermark/detect")
    async def watermark_detect(request: Request):
        """Our watermark (with the service's key) and the known marks."""
        from starlette.concurrency import run_in_threadpool

        [(name, data)] = (await read_upload(request))[:1]
        need_ready()

        def work():
            from aigcguard.watermark import detect, detect_known

            pixels = decode(name, data)
            if min(pixels.shape[1:]) < 64:
                raise ApiError(422, f"{name}: {pixels.shape[2]}x{pixels.shape[1]} is too small")
            with state.lock:
                [ours] = detect([pixels], key=state.checker.key, device=device)
                [known] = detect_known([pixels], device=device)
            return {"path": name, "watermark": ours.to_dict(), "known": known.to_dict()}

        return await run_in_threadpool(work)

    @app.post("/v1/watermark/embed")
    async def watermark_embed(request: Request):
        """Mark a picture with the service's key; returns the PNG. Query parameters:
        ``message`` (text) or ``message_hex``; without them a random payload. The payload
        comes back in the ``X-Watermark-Payload`` header. Send an ``Idempotency-Key`` header
        to make a retry return the same picture instead of marking it again."""
        from starlette.concurrency import run_in_threadpool

        [(name, data)] = (await read_upload(request))[:1]
        need_ready()
        message = request.query_params.get("message")
        message_hex = request.query_params.get("message_hex")
        idem = request.headers.get("idempotency-key")
        fingerprint = hashlib.sha256(
            data + b"\0" + (message or "").encode() + b"\0" + (message_hex or "").encode()
        ).hexdigest()
        cache_key = None
        if idem:
            caller = request.headers.get("x-api-key") or request.headers.get("authorization", "")
            cache_key = (hashlib.sha256(caller.encode()).hexdigest(), idem)
            with state.lock:
                hit = state.idempotent.get(cache_key)
            if hit is not None:
                if hit[0] != fingerprint:
                    raise ApiError(422, "this Idempotency-Key was used with a different request")
                return Response(hit[1], media_type="image/png", headers=hit[2])

        def work():
            import secrets

            from aigcguard.watermark import PAYLOAD_BYTES, embed

            if message is not None and message_hex is not None:
                raise ApiError(422, "give message or message_hex, not both")
            try:
                payload = (
                    bytes.fromhex(message_hex)
                    if message_hex is not None
                    else message.encode("utf-8")
                    if message is not None
                    else secrets.token_bytes(PAYLOAD_BYTES)
                )
            except ValueError:
                raise ApiError(422, "message_hex is not hexadecimal") from None
            if len(payload) > PAYLOAD_BYTES:
                raise ApiError(422, f"the message is above {PAYLOAD_BYTES} bytes")
            pixels = decode(name, data)
            try:
                [marked] = embed([pixels], payload, key=state.checker.key, device=device)
            except ValueError as exc:
                raise ApiError(422, f"{name}: {exc}") from None
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(marked.permute(1, 2, 0).cpu().numpy()).save(buf, format="PNG")
            headers = {"X-Watermark-Payload": payload.ljust(PAYLOAD_BYTES, b"\0").hex()}
            return buf.getvalue(), headers

        body, headers = await run_in_threadpool(work)
        if cache_key is not None:
            with state.lock:
                state.idempotent[cache_key] = (fingerprint, body, headers)
                while len(state.idempotent) > config.idempotency_entries:
                    state.idempotent.popitem(last=False)
        return Response(body, media_type="image/png", headers=headers)

    @app.post("/v1/similar")
    async def similar(request: Request):
        """Registered works this picture resembles or copies (needs a configured index)."""
        from starlette.concurrency import run_in_threadpool

        [(name, data)] = (await read_upload(request))[:1]
        checker = need_ready()
        if checker.index is None:
            raise ApiError(404, "this service has no similarity index configured")

        def work():
            pixels = decode(name, data)
            digest = hashlib.sha256(data).hexdigest()
            with state.lock:
                [result] = checker.index.search([pixels], paths=[name], sha256=[digest])
            return result.to_dict()

        return await run_in_threadpool(work)

    return app
