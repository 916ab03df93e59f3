"""``POST /v1/check`` and ``POST /v1/check/batch``: every signal about a picture, through the
same :class:`~aigcguard.service.check.Checker` as ``aigc check``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from aigcguard.results import JsonResult
from aigcguard.service.http.deps import (
    Admitted,
    AppState,
    Picture,
    Ready,
    State,
    Upload,
    Uploads,
    decode,
    picture_errors,
)
from aigcguard.service.http.deps import ready as require_ready
from aigcguard.service.http.errors import ApiError, ErrorInfo
from aigcguard.service.http.registry import ROUTERS

if TYPE_CHECKING:
    import torch

    from aigcguard.service.check import CheckResult

router = APIRouter(tags=["check"])


@dataclass(frozen=True)
class Failure(JsonResult):
    """A picture of a batch that could not be checked; the others go on."""

    path: str
    error: ErrorInfo


@dataclass(frozen=True)
class BatchResult(JsonResult):
    results: list[dict[str, Any]]


@contextmanager
def checked(state: State, picture: Picture) -> Iterator[tuple[CheckResult, torch.Tensor]]:
    """The check of one uploaded picture (named as uploaded) and its pixels, inside the
    checker's lock, so that what uses the checker's index next (a report) runs there too."""
    name, data = picture
    pixels = decode(picture, state.config)
    # metadata signals read files: the bytes go to a private temporary file
    fd, tmp = tempfile.mkstemp(prefix="aigc-check-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with state.exclusive(), picture_errors(name):  # the index and detectors are shared
            yield replace(state.checker.check(pixels, tmp, on_disk=True), path=name), pixels
    finally:
        Path(tmp).unlink(missing_ok=True)


def check_picture(state: State, picture: Picture) -> dict[str, Any]:
    """The check of one uploaded picture, as ``aigc check`` prints it for a file."""
    with checked(state, picture) as (result, _):
        return result.to_dict()


@router.post("/v1/check")
def check(slot: Admitted, picture: Upload, state: Ready):
    """Every signal about one picture, and the summary (see `aigc check`)."""
    return check_picture(state, picture)


@router.post("/v1/check/batch")
def check_batch(slot: Admitted, pictures: Uploads, state: AppState):
    """Several pictures (multipart field ``files``); a bad one gets its own error entry."""
    require_ready(state)  # after the batch limit: a 413 does not wait for the models
    out = []
    for picture in pictures:
        try:
            with picture_errors(picture[0]):  # whatever goes wrong, this picture's entry
                out.append(check_picture(state, picture))
        except ApiError as exc:
            if exc.status == 503:  # past the deadline: the answer was given, stop working
                raise
            out.append(Failure(picture[0], exc.info).to_dict())
    return BatchResult(out).to_dict()


ROUTERS.add("check", lambda: router)
