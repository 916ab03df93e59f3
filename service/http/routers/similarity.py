"""``POST /v1/similar``: registered works a picture resembles or copies, by the same
:meth:`SimilarityIndex.search <aigcguard.provenance.similarity.index.SimilarityIndex.search>`
as ``aigc similar``; 404 when the service has no index configured."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter

from aigcguard.service.http.deps import Admitted, Ready, Upload, decode, picture_errors
from aigcguard.service.http.errors import ApiError
from aigcguard.service.http.registry import ROUTERS

router = APIRouter(tags=["similarity"])


@router.post("/v1/similar")
def similar(slot: Admitted, picture: Upload, state: Ready):
    """Registered works this picture resembles or copies (needs a configured index)."""
    index = state.checker.index
    if index is None:
        raise ApiError(404, "this service has no similarity index configured")
    name, data = picture
    pixels = decode(picture, state.config)
    digest = hashlib.sha256(data).hexdigest()
    with state.exclusive(), picture_errors(name):
        [result] = index.search([pixels], paths=[name], sha256=[digest])
    return result.to_dict()


ROUTERS.add("similarity", lambda: router)
