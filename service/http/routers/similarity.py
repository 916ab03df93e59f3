"""``POST /v1/similar``: registered works a picture resembles or copies, by the same
:meth:`SimilarityIndex.search <aigcguard.provenance.similarity.index.SimilarityIndex.search>`
as ``aigc similar``; ``GET /v1/similar/works/{id}/picture``: a registered work's own picture
(a preview), by the ``id`` a match gives, so that a page can show it beside the upload. Both
404 when the service has no index configured."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Path, Response

from aigcguard.service.http.deps import Admitted, Ready, Upload, decode, log, picture_errors
from aigcguard.service.http.errors import ApiError
from aigcguard.service.http.registry import ROUTERS

router = APIRouter(tags=["similarity"])

NO_INDEX = "this service has no similarity index configured"
#: the long side of a registered work's preview: enough beside an upload on a page, small
#: enough that a card's few works load at once
PREVIEW_SIDE = 512
#: a store's ids are non-negative 64-bit integers; anything else is no id (422)
WorkId = Annotated[int, Path(ge=0, le=2**63 - 1, description="a match's id")]


@router.post("/v1/similar")
def similar(slot: Admitted, picture: Upload, state: Ready):
    """Registered works this picture resembles or copies (needs a configured index)."""
    index = state.checker.index
    if index is None:
        raise ApiError(404, NO_INDEX)
    name, data = picture
    pixels = decode(picture, state.config)
    digest = hashlib.sha256(data).hexdigest()
    with state.exclusive(), picture_errors(name):
        [result] = index.search([pixels], paths=[name], sha256=[digest])
    return result.to_dict()


@router.get(
    "/v1/similar/works/{work_id}/picture",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the work's preview"}},
)
def work_picture(work_id: WorkId, state: Ready) -> Response:
    """The registered work with this id (a match's ``id``) as a JPEG preview, at most 512 px
    a side, turned upright as its EXIF orientation says. Only works of the index are served,
    by id, never a path; 404 without an index, for an unknown id, or when the work's file can
    no longer be read (the message names the work, not where its file was)."""
    from aigcguard.imageio import ImageLoadError, load_image
    from aigcguard.report import jpeg

    index = state.checker.index
    if index is None:
        raise ApiError(404, NO_INDEX)
    try:
        [work] = index.store.get([work_id])
    except KeyError:  # its message names the store's path: not for the client
        raise ApiError(404, f"no registered work with id {work_id} in the index") from None
    # no turn on the shared models: the store has its own lock, and this reads one file
    try:
        pixels = load_image(work.path).pixels
    except (ImageLoadError, OSError) as exc:
        log.warning("registered work %d cannot be read: %s", work_id, exc)
        title = f" ({work.title!r})" if work.title else ""
        raise ApiError(
            404, f"registered work {work_id}{title}: its file can no longer be read"
        ) from None
    data = jpeg(pixels.permute(1, 2, 0).numpy(), PREVIEW_SIDE, quality=85)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-cache"}
    return Response(data, media_type="image/jpeg", headers=headers)


ROUTERS.add("similarity", lambda: router)
