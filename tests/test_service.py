"""The HTTP service, driven over real HTTP on loopback."""

from __future__ import annotations

import contextlib
import io

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the service needs fastapi")
import uvicorn

from aigcguard.service.http import ServiceConfig, create_app
from tests.helpers import free_port, serving

KEY = "service test key"


@pytest.fixture(scope="module")
def serve():
    """Start services on loopback; yields a function config -> base URL."""
    with contextlib.ExitStack() as servers:

        def start(config: ServiceConfig) -> str:
            app = create_app(config, device="cpu")
            settings = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
            return servers.enter_context(serving(settings, ready_s=60))

        yield start


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def open_service(serve):
    return serve(ServiceConfig(watermark_key=KEY, max_body_bytes=4_000_000, max_pixels=2_000_000))


def test_health_and_check_by_multipart_and_raw_body(open_service, photos):
    base = open_service
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    png = _png(photos["astronaut"])
    r = httpx.post(f"{base}/v1/check", files={"file": ("a.png", png, "image/png")}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "a.png" and body["summary"]["verdict"] in (
        "no_evidence",
        "likely_generated",
    )
    assert body["credentials"]["state"] == "absent" and body["detector"]["model"] == "default"
    assert body["credentials"]["integrity"] is None and "declarations" in body["credentials"]
    assert body["detector"]["target_fpr"] == 0.01  # strict enough for the detector to decide
    r = httpx.post(f"{base}/v1/check", content=png, timeout=120)
    assert r.status_code == 200 and r.json()["summary"] == body["summary"]
    assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "aigc-guard"


def test_embed_detect_round_trip_and_idempotency(open_service, photos):
    base = open_service
    png = _png(photos["coffee"])
    files = {"file": ("c.png", png, "image/png")}
    r = httpx.post(
        f"{base}/v1/watermark/embed",
        files=files,
        params={"message": "id-7"},
        headers={"Idempotency-Key": "job-1"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-watermark-payload"] == b"id-7".ljust(8, b"\0").hex()
    again = httpx.post(
        f"{base}/v1/watermark/embed",
        files=files,
        params={"message": "id-7"},
        headers={"Idempotency-Key": "job-1"},
        timeout=120,
    )
    assert again.content == r.content
    other = httpx.post(
        f"{base}/v1/watermark/embed",
        files=files,
        params={"message": "id-8"},
        headers={"Idempotency-Key": "job-1"},
        timeout=120,
    )
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]["message"]
    d = httpx.post(f"{base}/v1/watermark/detect", content=r.content, timeout=120).json()
    assert d["watermark"]["detected"] and d["watermark"]["payload_text"] == "id-7"


def test_errors_are_json_with_the_right_status(open_service, photos):
    base = open_service
    r = httpx.post(f"{base}/v1/check", content=b"this is not a picture", timeout=30)
    assert r.status_code == 415 and "error" in r.json()
    truncated = _png(photos["coffee"])[:2000]
    r = httpx.post(f"{base}/v1/check", content=truncated, timeout=30)
    assert r.status_code == 422 and r.json()["error"]["status"] == 422
    r = httpx.post(f"{base}/v1/check", content=b"", timeout=30)
    assert r.status_code == 400
    big = np.zeros((1500, 2000, 3), np.uint8)  # 3 MP: above the 2 MP limit, small as PNG
    r = httpx.post(f"{base}/v1/check", content=_png(big), timeout=30)
    assert r.status_code == 413 and "pixels" in r.json()["error"]["message"]
    r = httpx.post(f"{base}/v1/check", content=b"x" * 4_000_001, timeout=30)
    assert r.status_code == 413
    r = httpx.post(f"{base}/v1/similar", content=_png(photos["coffee"]), timeout=30)
    assert r.status_code == 404 and "index" in r.json()["error"]["message"]
    r = httpx.post(f"{base}/v1/check", data={"file": "a form, not a picture"}, timeout=30)
    assert r.status_code == 415 and "error" in r.json()
    r = httpx.post(
        f"{base}/v1/check",
        data={"file": "text"},
        files={"other": ("o.png", b"x", "image/png")},
        timeout=30,
    )
    assert r.status_code == 422 and "must be a file" in r.json()["error"]["message"]
    r = httpx.post(
        f"{base}/v1/watermark/embed",
        content=_png(photos["coffee"]),
        params={"message_hex": "zz"},
        timeout=30,
    )
    assert r.status_code == 422
    r = httpx.post(
        f"{base}/v1/check/batch",
        files=[
            ("files", ("ok.png", _png(photos["rocket"]), "image/png")),
            ("files", ("bad.png", b"nope", "image/png")),
        ],
        timeout=120,
    )
    assert r.status_code == 200
    results = r.json()["results"]
    assert "summary" in results[0] and results[1]["error"]["status"] == 415
    assert httpx.get(f"{base}/readyz").status_code == 200  # still ready after all that


def test_api_keys(serve, photos):
    base = serve(ServiceConfig(api_keys=("s3cret",)))
    png = _png(photos["coffee"][:200, :200])
    assert httpx.post(f"{base}/v1/check", content=png, timeout=30).status_code == 401
    bad = httpx.post(f"{base}/v1/check", content=png, headers={"X-API-Key": "nope"}, timeout=30)
    assert bad.status_code == 401 and "API key" in bad.json()["error"]["message"]
    ok = httpx.post(
        f"{base}/v1/check", content=png, headers={"Authorization": "Bearer s3cret"}, timeout=60
    )
    assert ok.status_code == 200
    assert httpx.get(f"{base}/healthz").status_code == 200  # probes need no key


def test_config_file_and_cli_refuses_open_host_without_keys(tmp_path):
    from click.testing import CliRunner

    from aigcguard.cli import main

    cfg = tmp_path / "service.toml"
    cfg.write_text('[service]\napi_keys = ["k"]\nledger = "l.sqlite"\nmax_batch = 4\n')
    loaded = ServiceConfig.load(cfg)
    assert loaded.api_keys == ("k",) and loaded.ledger == str(tmp_path / "l.sqlite")
    bad = tmp_path / "bad.toml"
    bad.write_text("[service]\nmax_bodybytes = 5\n")
    with pytest.raises(ValueError, match="unknown service settings"):
        ServiceConfig.load(bad)
    r = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    assert r.exit_code != 0 and "without API keys" in r.output


def test_hostile_pictures_get_4xx_or_an_answer_never_5xx(open_service, photos):
    """Tiny, thin and lying pictures (issue 18) through every endpoint that decodes one: no
    5xx, a batch answers for each picture, and the service stays ready."""
    base = open_service

    def png(h, w):
        return _png(np.full((h, w, 3), 77, np.uint8))

    jpeg = io.BytesIO()
    Image.fromarray(photos["coffee"][:16, :16]).save(jpeg, format="JPEG")
    lying = bytearray(jpeg.getvalue())
    at = lying.find(b"\xff\xc0") + 5  # the frame header's height and width: 7999 x 8000
    lying[at : at + 4] = (7999).to_bytes(2, "big") + (8000).to_bytes(2, "big")
    hostile = {
        "1x1.png": png(1, 1),
        "5x5.png": png(5, 5),
        "7x300.png": png(7, 300),
        "300x7.png": png(300, 7),
        "63x64.png": png(63, 64),
        "5x50000.png": png(5, 50_000),
        "lying.jpg": bytes(lying),
        "header-only.png": png(64, 64)[:40],
    }
    for endpoint in ("/v1/check", "/v1/watermark/detect", "/v1/watermark/embed"):
        for name, data in hostile.items():
            r = httpx.post(
                f"{base}{endpoint}", files={"file": (name, data, "image/png")}, timeout=120
            )
            assert r.status_code < 500, (endpoint, name, r.text)
            if r.status_code >= 400:
                assert r.json()["error"]["status"] == r.status_code
    good = ("good.png", _png(photos["rocket"]), "image/png")
    files = [("files", (n, d, "image/png")) for n, d in list(hostile.items())[:7]]
    r = httpx.post(f"{base}/v1/check/batch", files=[*files, ("files", good)], timeout=300)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["path"] for x in results] == [*list(hostile)[:7], "good.png"]
    assert "summary" in results[-1]
    assert all("summary" in x or 400 <= x["error"]["status"] < 500 for x in results)
    assert httpx.get(f"{base}/readyz").status_code == 200
