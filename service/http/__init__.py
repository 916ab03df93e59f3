"""The HTTP service: the library's checks behind FastAPI, models loaded once and shared.

    aigc serve [--host 127.0.0.1] [--port 8000] [--config service.toml]

Endpoints (OpenAPI at ``/docs``): ``POST /v1/check`` (one picture, as multipart field ``file``
or as the raw body), ``POST /v1/check/batch`` (multipart fields ``files``),
``POST /v1/watermark/embed`` (returns the marked PNG; honours ``Idempotency-Key``),
``POST /v1/watermark/detect``, ``POST /v1/similar``, ``GET /v1/similar/works/{id}/picture``
(a registered work's picture as a JPEG preview, by the id a match gives),
``POST /v1/check/report`` (one picture's HTML report), ``GET /v1/info`` (what the service
checks with, each detector's one-line model card included), ``GET /healthz`` (the process
answers), ``GET /readyz`` (503 until the models and the index are loaded), and the page at
``GET /`` (its files under ``/static/``) that checks pictures in a browser.

Every answer carries ``Server-Timing: app;dur=MS``, the service's own time to start it.
Errors are JSON, ``{"error": {"status": N, "message": "..."}}``: 400 a request that cannot be
used, 401 a missing or wrong API key (when keys are configured: every path but the probes and
the page with its files, which hold no data; the OpenAPI pages too unless ``public_docs``),
408 a request or body that did not arrive in time, 413 a body or a picture above the limits,
404 an unknown path or a feature this service was not configured with (similarity without an
index), or a registered work not in the index or whose file is gone, 415 not a picture, 422 a
picture that cannot be decoded or processed or a bad field, 503 not ready or past the
request's deadline.

Layout: ``app`` (the factory), ``config`` (:class:`ServiceConfig`), ``deps`` (shared state,
readiness, API key, uploads, the error boundary of one picture), ``errors``, ``limits`` (body
size and pace, deadline), ``middleware``, ``server`` (uvicorn with a header timeout: what
``aigc serve`` runs), and ``routers/`` with one ``APIRouter`` per area (check, watermark,
similarity, health, page), each registered in :data:`ROUTERS`.
"""

from aigcguard.service.http.app import create_app
from aigcguard.service.http.config import DEFAULTS, ServiceConfig
from aigcguard.service.http.errors import ApiError
from aigcguard.service.http.registry import ROUTERS

__all__ = ["DEFAULTS", "ROUTERS", "ApiError", "ServiceConfig", "create_app"]
