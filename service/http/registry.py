"""The endpoint areas: one FastAPI ``APIRouter`` per area, under a name.

``create_app`` includes every registered router, so a new area is its own module plus one
registration (and, for an area shipped here, its import in ``routers/__init__.py``)::

    router = APIRouter(tags=["toy"])

    @router.post("/v1/toy")
    def toy(picture: Upload, state: Ready): ...

    ROUTERS.add("toy", lambda: router)

The factory is called once per app. Every path but the probes and the page (``/`` and
``/static/...``) needs the API key when keys are configured (see ``middleware``).
"""

from __future__ import annotations

from fastapi import APIRouter

from aigcguard.registry import Registry

ROUTERS: Registry[APIRouter] = Registry("router")
