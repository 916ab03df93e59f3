"""Extension point: a new endpoint area is its own ``APIRouter`` plus one registration.

The toy router below is the whole of an area (docs/architecture.md, "a new endpoint"): one
``ROUTERS.add`` line makes ``create_app`` serve it, behind the same API key check, body limit
and JSON errors as the shipped areas, with no other file touched.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the service needs fastapi")
from fastapi import APIRouter
from fastapi.testclient import TestClient

from aigcguard.service.http import ROUTERS, ServiceConfig, create_app
from aigcguard.service.http.deps import Settings, Upload

SHIPPED = ["check", "health", "page", "similarity", "watermark"]


@pytest.fixture
def toy_area():
    router = APIRouter(tags=["toy"])

    @router.post("/v1/toy/size")
    def toy_size(picture: Upload, config: Settings):
        """How many bytes were sent, and the service's byte limit."""
        name, data = picture
        return {"path": name, "bytes": len(data), "limit": config.max_body_bytes}

    ROUTERS.add("toy", lambda: router)
    yield router
    ROUTERS.remove("toy")


def test_a_registered_toy_router_is_served_by_create_app(toy_area):
    assert ROUTERS.list() == sorted([*SHIPPED, "toy"])
    # without `with`, the lifespan (model loading) does not run: the toy needs no models
    client = TestClient(create_app(ServiceConfig(max_body_bytes=1000), device="cpu"))
    r = client.post("/v1/toy/size", content=b"12345")
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "upload", "bytes": 5, "limit": 1000}
    r = client.post("/v1/toy/size", files={"file": ("t.bin", b"abc", "application/octet-stream")})
    assert r.json()["path"] == "t.bin" and r.json()["bytes"] == 3
    assert "/v1/toy/size" in client.get("/openapi.json").json()["paths"]
    # the shared dependencies and middleware apply: JSON errors, the body limit
    r = client.post("/v1/toy/size", content=b"")
    assert r.status_code == 400 and r.json()["error"]["status"] == 400
    r = client.post("/v1/toy/size", content=b"x" * 1001)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    assert client.get("/v1/toy/size").status_code == 405


def test_the_api_key_guards_the_toy_router_like_the_others(toy_area):
    client = TestClient(create_app(ServiceConfig(api_keys=("s3cret",)), device="cpu"))
    for path in ("/v1/toy/size", "/v1/check"):
        r = client.post(path, content=b"abc")
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
        r = client.post(path, content=b"abc", headers={"X-API-Key": "nope"})
        assert r.status_code == 401
    ok = client.post("/v1/toy/size", content=b"abc", headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200 and ok.json()["bytes"] == 3
    ok = client.post("/v1/toy/size", content=b"abc", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert client.get("/healthz").status_code == 200  # probes need no key


def test_after_removal_the_toy_is_gone():
    assert ROUTERS.list() == SHIPPED
    client = TestClient(create_app(ServiceConfig(), device="cpu"))
    r = client.post("/v1/toy/size", content=b"abc")
    assert r.status_code == 404 and r.json()["error"]["status"] == 404
    assert "/v1/toy/size" not in client.get("/openapi.json").json()["paths"]
