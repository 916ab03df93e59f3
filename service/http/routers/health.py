"""``GET /healthz`` (the process answers) and ``GET /readyz`` (503 until the models and the
index are loaded; then this worker's load); neither needs an API key. Coroutines: they
answer from the event loop even while every worker thread is busy."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from aigcguard.results import JsonResult
from aigcguard.service.http.deps import AppState
from aigcguard.service.http.errors import error_response
from aigcguard.service.http.registry import ROUTERS

router = APIRouter(tags=["health"])


@dataclass(frozen=True)
class Status(JsonResult):
    status: str


@dataclass(frozen=True)
class Readiness(JsonResult):
    """``load``: this worker's requests in flight (served or waiting), its capacity, and how
    many it accepted and refused (503) since it started."""

    status: str
    load: dict[str, int]


@router.get("/healthz")
async def healthz():
    return Status("ok").to_dict()


@router.get("/readyz")
async def readyz(state: AppState):
    if not state.ready.is_set():
        why = state.load_error or "loading models"
        return error_response(503, f"not ready: {why}")
    return Readiness("ready", state.admission.stats()).to_dict()


ROUTERS.add("health", lambda: router)
