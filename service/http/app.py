"""The app factory: settings and shared state, error handlers, the guard middleware, and every
router registered in ``ROUTERS``."""

from __future__ import annotations

from fastapi import FastAPI

from aigcguard.service.http import routers as _routers  # noqa: F401  (registers the areas)
from aigcguard.service.http.config import ServiceConfig
from aigcguard.service.http.deps import State, lifespan
from aigcguard.service.http.errors import install_error_handlers
from aigcguard.service.http.middleware import Guard
from aigcguard.service.http.registry import ROUTERS


def create_app(config: ServiceConfig | None = None, *, device: str = "auto") -> FastAPI:
    """The FastAPI application (default settings without ``config``). Models load in a
    background thread at start-up; requests that need them get 503 until ``/readyz`` says
    ready."""
    app = FastAPI(
        title="aigc-guard",
        summary="Where did this image come from? Watermarks, provenance, copies, detection.",
        lifespan=lifespan,
    )
    app.state.aigc = State(config or ServiceConfig(), device)
    install_error_handlers(app)
    docs = {app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url}
    app.add_middleware(Guard, docs=frozenset(d for d in docs if d))
    for name in ROUTERS:
        app.include_router(ROUTERS.create(name))
    return app
