"""``GET /healthz`` (the process answers) and ``GET /readyz`` (503 until the models and the
index are loaded); neither needs an API key. Coroutines: they answer from the event loop even
while every worker thread is busy."""

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


@router.get("/healthz")
async def healthz():
    return Status("ok").to_dict()


@router.get("/readyz")
async def readyz(state: AppState):
    if not state.ready.is_set():
        why = state.load_error or "loading models"
        return error_response(503, f"not ready: {why}")
    return Status("ready").to_dict()


ROUTERS.add("health", lambda: router)
