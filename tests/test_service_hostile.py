"""The HTTP service against hostile clients (issue 18): API keys that are empty, non-ASCII
or not even Latin-1; chunked bodies above the limit; connections that never finish their
headers or their body; requests that run past their deadline; pictures that make the work
raise. Real uvicorn servers on loopback (with the protocol ``aigc serve`` uses, models not
loaded: a stand-in checker) where the socket matters, TestClient elsewhere."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the service needs fastapi")
from fastapi import APIRouter
from fastapi.testclient import TestClient

from aigcguard.results import JsonResult
from aigcguard.service.http import ROUTERS, ServiceConfig, create_app
from aigcguard.service.http.deps import AppState
from aigcguard.service.http.server import server_config
from tests.helpers import free_port, serving

KEY = "clé-☂-secret"  # a non-ASCII key: sent as its UTF-8 bytes


@dataclass(frozen=True)
class FakeResult(JsonResult):
    path: str
    verdict: str


class FakeChecker:
    """Stands in for the models: a picture 13 pixels high makes it raise, as the known-mark
    reader did on pictures under 8 pixels."""

    key, index = None, None

    def check(self, pixels, path, on_disk):
        if pixels.shape[1] == 13:
            raise RuntimeError("cannot reshape tensor of 0 elements")
        return FakeResult(path, "no_evidence")

    def close(self):
        pass


def _ready_app(config: ServiceConfig):
    app = create_app(config, device="cpu")
    state = app.state.aigc
    state.checker = FakeChecker()
    state.ready.set()
    return app


def _png(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def serve():
    """Start the app as ``aigc serve`` does (its uvicorn settings), with the stand-in
    checker; yields config -> port."""
    with contextlib.ExitStack() as servers:

        def start(config: ServiceConfig, app=None) -> int:
            port = free_port()
            app = app or _ready_app(config)
            settings = server_config(app, config, host="127.0.0.1", port=port, log_level="warning")
            settings.lifespan = "off"  # no model loading: the stand-in is ready
            servers.enter_context(serving(settings, ready_s=30))
            return port

        yield start


# -- API keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", ['[""]', '["   "]', '["ok", "\\t"]', '[" padded "]', '"k"'])
def test_empty_blank_or_odd_keys_are_refused_at_start_up(tmp_path, keys):
    from click.testing import CliRunner

    from aigcguard.cli import main

    cfg = tmp_path / "service.toml"
    cfg.write_text(f"[service]\napi_keys = {keys}\n")
    with pytest.raises(ValueError, match=r"service\.toml: api_keys"):
        ServiceConfig.load(cfg)
    for host in ("0.0.0.0", "127.0.0.1"):  # an empty key never opens the service
        r = CliRunner().invoke(main, ["serve", "--host", host, "--config", str(cfg)])
        assert r.exit_code != 0 and "service.toml" in r.output and "api_keys" in r.output


def test_other_bad_settings_name_the_file_and_the_setting(tmp_path):
    cfg = tmp_path / "s.toml"
    for line, setting in [
        ("max_body_bytes = 0", "max_body_bytes"),
        ("request_timeout = -1", "request_timeout"),
        ('public_docs = "yes"', "public_docs"),
        ("max_batch = true", "max_batch"),
    ]:
        cfg.write_text(f"[service]\n{line}\n")
        with pytest.raises(ValueError, match=rf"s\.toml: {setting}"):
            ServiceConfig.load(cfg)
    cfg.write_text(
        '[service]\napi_keys = ["ключ"]\npublic_docs = true\nheader_timeout = 2\n'
        "body_timeout = 3.5\nrequest_timeout = 30\nmax_connections = 64\n"
    )
    loaded = ServiceConfig.load(cfg)
    assert loaded.api_keys == ("ключ",) and loaded.public_docs
    assert (loaded.header_timeout, loaded.body_timeout, loaded.request_timeout) == (2, 3.5, 30)


def test_the_defaults_table_lists_every_setting():
    from dataclasses import fields

    from aigcguard.service.http import DEFAULTS

    assert [f.name for f in fields(ServiceConfig)] == list(DEFAULTS)


def test_any_key_header_gets_401_never_500_and_a_non_ascii_key_works():
    client = TestClient(_ready_app(ServiceConfig(api_keys=(KEY,))))
    png = _png(64, 64)
    hostile = [
        {"X-API-Key": "clé".encode()},  # non-ASCII
        {"X-API-Key": b"\xff\xfe\x80"},  # not UTF-8
        {"Authorization": b"Bearer \xe2\x98\x82"},
        {"Authorization": ("Bearer " + KEY.encode().decode("latin-1")).encode()},  # mis-decoded
        {"X-API-Key": KEY.encode()[:-1]},
        {"Authorization": b"Bearer"},
        {"X-API-Key": b""},
    ]
    for headers in hostile:
        r = client.post("/v1/check", content=png, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["status"] == 401
    for headers in ({"X-API-Key": KEY.encode()}, {"Authorization": b"Bearer " + KEY.encode()}):
        r = client.post("/v1/check", content=png, headers=headers)
        assert r.status_code == 200 and r.json()["verdict"] == "no_evidence", r.text


def test_non_latin1_key_bytes_over_a_real_socket_get_401(serve):
    port = serve(ServiceConfig(api_keys=(KEY,)))
    for value in (b"\xff\xfe\xfd", "☂".encode(), KEY.encode() + b"\x80"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /v1/check HTTP/1.1\r\nHost: x\r\nX-API-Key: " + value + b"\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 401")
    r = httpx.post(
        f"http://127.0.0.1:{port}/v1/check",
        content=_png(64, 64),
        headers={"X-API-Key": KEY.encode()},
    )
    assert r.status_code == 200


def test_docs_are_behind_the_key_unless_public_docs():
    paths = ("/docs", "/redoc", "/openapi.json")
    client = TestClient(_ready_app(ServiceConfig(api_keys=("k",))))
    for path in paths:
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-API-Key": "k"}).status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    public = TestClient(_ready_app(ServiceConfig(api_keys=("k",), public_docs=True)))
    for path in paths:
        assert public.get(path).status_code == 200
    assert public.post("/v1/check", content=b"x").status_code == 401
    open_service = TestClient(_ready_app(ServiceConfig()))  # no keys (loopback only)
    assert open_service.get("/openapi.json").json()["info"]["title"] == "aigc-guard"


# -- the body limit while streaming ----------------------------------------------------------


def test_a_chunked_body_above_the_limit_gets_413_in_testclient():
    # TestClient reads a generator whole before the app runs: the streaming itself is
    # tested over a socket below; here the limit on a body without Content-Length
    client = TestClient(_ready_app(ServiceConfig(max_body_bytes=10_000)))

    def body():
        for _ in range(1000):  # 1 MB, chunked
            yield b"x" * 1000

    r = client.post("/v1/check", content=body())
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    assert r.headers["connection"] == "close"
    r = client.post("/v1/check/batch", files={"files": ("a.png", b"x" * 20_000, "image/png")})
    assert r.status_code == 413


def _chunked_upload(port: int, head: bytes, total: int, limit: int) -> dict:
    """Send ``total`` bytes chunked (64 KiB pieces) while another thread reads the answer;
    when the answer came, relative to the moment the limit was crossed."""
    got = {"answer": b"", "at": None}
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)

    def read():
        try:
            while b"\r\n\r\n" not in got["answer"]:
                data = sock.recv(65536)
                if not data:
                    break
                got["answer"] += data
        except OSError:
            pass
        got["at"] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent, crossed, piece = 0, None, b"x" * 65536
    try:
        sock.sendall(head)
        while sent < total and got["at"] is None:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            if crossed is None and sent > limit:
                crossed = time.monotonic()
    except OSError:  # the server closed the connection: what we want
        pass
    reader.join(timeout=10)
    sock.close()
    return {"answer": got["answer"], "after": got["at"] - crossed, "sent": sent}


@pytest.mark.parametrize("multipart", [False, True])
def test_a_chunked_upload_above_the_limit_gets_413_within_a_second(serve, multipart):
    limit = 1_000_000
    port = serve(ServiceConfig(max_body_bytes=limit))
    ctype = b"application/octet-stream"
    if multipart:
        ctype = b"multipart/form-data; boundary=XyZ"
    head = (
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: " + ctype + b"\r\n\r\n"
    )
    if multipart:
        part = (
            b"--XyZ\r\nContent-Disposition: form-data; name=file; filename=big.png\r\n"
            b"Content-Type: image/png\r\n\r\n"
        )
        head += b"%x\r\n%s\r\n" % (len(part), part)
    result = _chunked_upload(port, head, 200 * 1024 * 1024, limit)
    assert result["answer"].startswith(b"HTTP/1.1 413"), result["answer"][:200]
    assert result["after"] < 1.0
    assert result["sent"] < 40 * 1024 * 1024  # stopped early, not 200 MiB read and spooled
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200


def test_httpx_streaming_a_generator_body_gets_413(serve):
    port = serve(ServiceConfig(max_body_bytes=100_000))

    def body():
        for _ in range(20):
            yield b"x" * 16_384  # 320 KiB, chunked: no Content-Length

    r = httpx.post(f"http://127.0.0.1:{port}/v1/check", content=body(), timeout=20)
    assert r.status_code == 413 and r.json()["error"]["status"] == 413


# -- header and body timeouts ----------------------------------------------------------------


def test_half_open_connections_are_closed_after_the_header_timeout(serve):
    port = serve(ServiceConfig(header_timeout=1.0))
    for sent in (b"", b"POST /v1/ch", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            start = time.monotonic()
            s.sendall(sent)
            answer = b""
            while data := s.recv(4096):  # until the server closes
                answer += data
            assert time.monotonic() - start < 3.0
            if sent:
                assert answer.startswith(b"HTTP/1.1 408"), answer
    # a kept-alive connection that answered once, then starts a request and stalls
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        while s.recv(4096):
            pass
        assert time.monotonic() - start < 3.0


def test_slow_clients_that_keep_sending_headers_are_closed_too(serve):
    port = serve(ServiceConfig(header_timeout=1.0))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        try:
            for i in range(30):  # one header line every 0.2 s: never finishes
                s.sendall(b"X-%d: y\r\n" % i)
                time.sleep(0.2)
        except OSError:
            pass
        assert time.monotonic() - start < 3.0


def test_a_body_that_stops_coming_gets_408(serve):
    port = serve(ServiceConfig(body_timeout=1.0))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 10)
        start = time.monotonic()
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower()
        assert time.monotonic() - start < 3.0


# -- the per-request deadline ----------------------------------------------------------------


@pytest.fixture
def slow_area():
    """Toy endpoints: one that sleeps, one that waits for the shared models."""
    router = APIRouter()
    seen = {"finished": threading.Event()}

    @router.post("/v1/toy/sleep")
    def toy_sleep(seconds: float = 3.0):
        time.sleep(seconds)
        return {"slept": seconds}

    @router.post("/v1/toy/turn")
    def toy_turn(state: AppState):
        try:
            with state.exclusive():
                return {"turn": True}
        finally:
            seen["finished"].set()

    ROUTERS.add("toy-slow", lambda: router)
    yield seen
    ROUTERS.remove("toy-slow")


def test_a_request_past_its_deadline_gets_503_and_its_worker_gives_up(serve, slow_area):
    config = ServiceConfig(request_timeout=1.0)
    app = _ready_app(config)
    base = f"http://127.0.0.1:{serve(config, app)}"
    start = time.monotonic()
    r = httpx.post(f"{base}/v1/toy/sleep", params={"seconds": 3}, timeout=10)
    assert r.status_code == 503 and "deadline" in r.json()["error"]["message"]
    assert time.monotonic() - start < 2.5  # answered at the deadline, not after the work
    r = httpx.post(f"{base}/v1/toy/sleep", params={"seconds": 0.1}, timeout=10)
    assert r.json() == {"slept": 0.1}
    assert httpx.get(f"{base}/readyz").status_code == 200

    state = app.state.aigc
    state.lock.acquire()  # a long check holds the models
    try:
        r = httpx.post(f"{base}/v1/toy/turn", timeout=10)
        assert r.status_code == 503
        # the worker waiting for its turn stopped at the deadline, not blocked for ever
        assert slow_area["finished"].wait(2.0)
    finally:
        state.lock.release()
    assert httpx.post(f"{base}/v1/toy/turn", timeout=10).json() == {"turn": True}


# -- hostile pictures: 4xx, and a batch goes on ------------------------------------------------


def test_a_picture_that_makes_the_work_raise_is_a_4xx_and_its_batch_goes_on():
    client = TestClient(_ready_app(ServiceConfig()))
    r = client.post("/v1/check", content=_png(13, 40))
    assert r.status_code == 422
    assert "RuntimeError" in r.json()["error"]["message"]
    r = client.post(
        "/v1/check/batch",
        files=[
            ("files", ("good.png", _png(64, 64), "image/png")),
            ("files", ("raises.png", _png(13, 40), "image/png")),
            ("files", ("junk.png", b"\x89PNG\r\n\x1a\nnope", "image/png")),
            ("files", ("also-good.png", _png(32, 48), "image/png")),
        ],
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["path"] for x in results] == ["good.png", "raises.png", "junk.png", "also-good.png"]
    assert results[0]["verdict"] == "no_evidence" and results[3]["verdict"] == "no_evidence"
    assert results[1]["error"]["status"] == 422 and "RuntimeError" in results[1]["error"]["message"]
    assert 400 <= results[2]["error"]["status"] < 500
    assert client.get("/readyz").status_code == 200


def test_an_unexpected_error_outside_a_picture_is_a_json_500():
    app = _ready_app(ServiceConfig())
    app.state.aigc.checker = None  # a bug: the endpoint cannot work
    client = TestClient(app, raise_server_exceptions=False)
    r = client.post("/v1/similar", content=_png(64, 64))
    assert r.status_code == 500 and r.json()["error"]["status"] == 500
    assert "AttributeError" in r.json()["error"]["message"]


def test_the_config_sets_the_loaders_side_and_aspect_limits(tmp_path):
    cfg = tmp_path / "service.toml"
    cfg.write_text("[service]\nmax_aspect = 2\nmax_side = 5000\n")
    config = ServiceConfig.load(cfg)
    assert (config.max_side, config.max_aspect) == (5000, 2)
    bad = tmp_path / "bad.toml"
    bad.write_text("[service]\nmax_aspect = 0.5\n")
    with pytest.raises(ValueError, match="max_aspect must be a ratio of at least 1"):
        ServiceConfig.load(bad)
    from aigcguard.service.http.deps import decode
    from aigcguard.service.http.errors import ApiError

    assert decode(("wide.png", _png(64, 120)), config).shape == (3, 64, 120)
    with pytest.raises(ApiError) as refused:
        decode(("wide.png", _png(64, 200)), config)
    assert refused.value.status == 413 and "aspect ratio" in refused.value.message
