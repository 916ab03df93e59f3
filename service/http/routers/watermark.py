"""``POST /v1/watermark/detect`` and ``POST /v1/watermark/embed``, with the service's key and
the same ``detect``, ``detect_known``, ``embed`` and ``parse_message`` as ``aigc watermark``."""

from __future__ import annotations

import hashlib
import io
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from aigcguard.results import JsonResult
from aigcguard.service.http.deps import (
    Admitted,
    Picture,
    Ready,
    State,
    Upload,
    decode,
    picture_errors,
)
from aigcguard.service.http.errors import ApiError
from aigcguard.service.http.limits import check_deadline
from aigcguard.service.http.registry import ROUTERS
from aigcguard.watermark import (
    PAYLOAD_BYTES,
    WatermarkDetection,
    detect,
    detect_known,
    embed,
    parse_message,
)

router = APIRouter(tags=["watermark"])


@dataclass(frozen=True)
class WatermarkReport(JsonResult):
    """Our mark and the strongest known one, each reported (not only the stronger)."""

    path: str
    watermark: WatermarkDetection
    known: WatermarkDetection


@dataclass(frozen=True)
class Marked:
    """An embed answer, kept for a retry with the same ``Idempotency-Key``."""

    fingerprint: str  # of the request, so that a reused key with another request is refused
    png: bytes
    headers: dict[str, str]

    def response(self) -> Response:
        return Response(self.png, media_type="image/png", headers=self.headers)


@router.post("/v1/watermark/detect")
def watermark_detect(slot: Admitted, picture: Upload, state: Ready):
    """Our watermark (with the service's key) and the known marks."""
    name = picture[0]
    pixels = decode(picture, state.config)
    if min(pixels.shape[1:]) < 64:
        raise ApiError(422, f"{name}: {pixels.shape[2]}x{pixels.shape[1]} is too small")
    with state.exclusive(), picture_errors(name):
        [ours] = detect([pixels], key=state.checker.key, device=state.device)
        [known] = detect_known([pixels], device=state.device)
    return WatermarkReport(name, ours, known).to_dict()


@router.post("/v1/watermark/embed")
def watermark_embed(
    slot: Admitted,
    picture: Upload,
    state: Ready,
    request: Request,
    message: str | None = None,
    message_hex: str | None = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    """Mark a picture with the service's key; returns the PNG. Query parameters:
    ``message`` (text) or ``message_hex``; without them a random payload. The payload
    comes back in the ``X-Watermark-Payload`` header. Send an ``Idempotency-Key`` header
    to make a retry return the same picture instead of marking it again."""
    fingerprint = hashlib.sha256(
        picture[1] + b"\0" + (message or "").encode() + b"\0" + (message_hex or "").encode()
    ).hexdigest()
    cache_key = None
    if idempotency_key:
        caller = request.headers.get("x-api-key") or request.headers.get("authorization", "")
        cache_key = (hashlib.sha256(caller.encode()).hexdigest(), idempotency_key)
        hit: Marked | None = state.idempotent.get(cache_key)
        if hit is not None:
            if hit.fingerprint != fingerprint:
                raise ApiError(422, "this Idempotency-Key was used with a different request")
            return hit.response()
    marked = _mark(state, picture, _payload(message, message_hex), fingerprint)
    if cache_key is not None:
        state.idempotent.put(cache_key, marked)
    return marked.response()


def _payload(message: str | None, message_hex: str | None) -> bytes:
    """The payload to embed: the message as ``aigc watermark embed`` parses it, else random."""
    if message is not None and message_hex is not None:
        raise ApiError(422, "give message or message_hex, not both")
    if message is None and message_hex is None:
        return secrets.token_bytes(PAYLOAD_BYTES)
    try:
        payload = parse_message(message, message_hex)
    except ValueError:
        raise ApiError(422, "message_hex is not hexadecimal") from None
    if len(payload) > PAYLOAD_BYTES:
        raise ApiError(422, f"the message is above {PAYLOAD_BYTES} bytes")
    return payload


def _mark(state: State, picture: Picture, payload: bytes, fingerprint: str) -> Marked:
    from PIL import Image

    pixels = decode(picture, state.config)
    check_deadline()  # embedding does not share the checker: no turn to wait for
    with picture_errors(picture[0]):
        try:
            [marked] = embed([pixels], payload, key=state.checker.key, device=state.device)
        except ValueError as exc:
            raise ApiError(422, f"{picture[0]}: {exc}") from None
    buf = io.BytesIO()
    Image.fromarray(marked.permute(1, 2, 0).cpu().numpy()).save(buf, format="PNG")
    headers = {"X-Watermark-Payload": payload.ljust(PAYLOAD_BYTES, b"\0").hex()}
    return Marked(fingerprint, buf.getvalue(), headers)


ROUTERS.add("watermark", lambda: router)
