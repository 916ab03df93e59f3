"""The page a person uses: ``GET /`` and its files under ``/static/`` (plain HTML, CSS and a
small script shipped in ``static/``: nothing is fetched from anywhere else), and the two
routes it calls besides ``POST /v1/check``: ``GET /v1/info`` (what this service checks with)
and ``POST /v1/check/report`` (one picture's self-contained HTML report, the one ``aigc check
--html`` writes).

The page and its files hold no data, so they are served without the API key (the middleware's
:data:`~aigcguard.service.http.middleware.OPEN_PREFIXES`); every ``/v1`` route they call still
needs it, and the page asks for it when keys are configured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response

from aigcguard.results import JsonResult
from aigcguard.service.http.deps import (
    Admitted,
    AppState,
    Ready,
    Upload,
)
from aigcguard.service.http.errors import ApiError
from aigcguard.service.http.registry import ROUTERS
from aigcguard.service.http.routers.check import checked

router = APIRouter(tags=["page"])

#: what the page may load and connect to: its own files, pictures the person chose (blob:)
#: and the report's inline pictures (data:); no inline script, no other origin, no framing
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: a downloaded report is one file with its style and pictures inline: nothing else loads
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
#: the shipped files the page is made of, by suffix
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
}
#: the mark in ``index.html`` that says whether the service wants an API key
KEYS_MARK = 'name="aigc-keys" content="optional"'


def _static() -> dict[str, tuple[bytes, str]]:
    """The shipped static files (their bytes and media type), by file name: read once, so a
    request can only ever get one of these."""
    folder = resources.files("aigcguard.service.http").joinpath("static")
    files = {}
    for item in folder.iterdir():
        media = TYPES.get(Path(item.name).suffix)
        if media is not None and item.is_file():
            files[item.name] = (item.read_bytes(), media)
    return files


STATIC = _static()


def _headers(csp: str = PAGE_CSP) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


@router.get("/", include_in_schema=False)
async def page(state: AppState) -> Response:
    """The page; it says whether this service wants an API key (it asks for one then)."""
    html = STATIC["index.html"][0].decode("utf-8")
    if state.config.api_keys:
        html = html.replace(KEYS_MARK, 'name="aigc-keys" content="required"')
    return Response(html, media_type=TYPES[".html"], headers=_headers())


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    found = STATIC.get(name)
    if found is None or name == "index.html":
        raise ApiError(404, f"no file {name!r} in the page's files")
    return Response(found[0], media_type=found[1], headers=_headers())


@dataclass(frozen=True)
class DetectorInfo(JsonResult):
    """One loaded detector's calibrated bands: ``likely_real`` below ``uncertain_below``,
    ``uncertain`` up to ``threshold``, ``likely_generated`` from it; ``target_fpr``: the
    share of real validation pictures at or above the threshold (None: unknown); ``card``:
    its model card in one line by language (``{"en": ..., "zh": ...}``, from
    data/model_cards.json), None when it is not a shipped checkpoint."""

    kind: str
    threshold: float
    uncertain_below: float
    target_fpr: float | None
    card: dict[str, str] | None = None


@dataclass(frozen=True)
class ServiceInfo(JsonResult):
    """What this service checks with: its detectors (by the name a check's ``detector.model``
    gives), whether it has an index of registered works (without one a check compares
    nothing) and a ledger (without one a mark is tied to no record), whether it looks for
    marks with the public key, and its upload limits."""

    detectors: dict[str, DetectorInfo]
    similarity_index: bool
    ledger: bool
    public_watermark_key: bool
    max_body_bytes: int
    max_batch: int


@router.get("/v1/info")
def info(state: Ready) -> dict[str, Any]:
    """What this service checks with (the page shows each detector's bands and one-line
    model card from it)."""
    from aigcguard.detectors import model_card
    from aigcguard.watermark import DEFAULT_KEY

    checker = state.checker
    det = checker.detector
    detectors = {
        det.spec: DetectorInfo(
            det.kind,
            round(det.calibration.threshold, 6),
            round(det.calibration.uncertain_below, 6),
            det.calibration.target_fpr,
            model_card(det),
        )
    }
    return ServiceInfo(
        detectors,
        checker.index is not None,
        checker.ledger is not None,
        checker.key == DEFAULT_KEY,
        state.config.max_body_bytes,
        state.config.max_batch,
    ).to_dict()


@router.post("/v1/check/report")
def check_report(slot: Admitted, picture: Upload, state: Ready) -> Response:
    """One picture's check as the self-contained HTML report (``aigc check --html``): the
    picture, the verdict and its reasons, every signal, copied works side by side."""
    from aigcguard.service.check import render_html

    name = picture[0]
    with checked(state, picture) as (result, pixels):  # the report reads the index too
        html = render_html([result], state.checker, pictures={name: pixels})
    headers = _headers(REPORT_CSP)
    headers["Content-Disposition"] = f'attachment; filename="{_report_name(name)}"'
    return Response(html, media_type=TYPES[".html"], headers=headers)


def _report_name(name: str) -> str:
    """A safe file name for the report of upload ``name`` (ASCII letters, digits, ``.-_``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "picture"
    return f"{stem[:80]}.report.html"


ROUTERS.add("page", lambda: router)
