"""The service sheds load (issue 22): a worker admits one request being served and
``queue_length`` waiting; the next gets 503 with Retry-After at once, before its body is read;
``workers`` forks that many processes on one socket, restarted when they die."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the service needs fastapi")

from aigcguard.service.http import ServiceConfig
from aigcguard.service.http.admission import Admission
from aigcguard.service.http.errors import ApiError
from tests.helpers import bench_module, free_port, wait_ready
from tests.test_service_hostile import FakeChecker, _ready_app, serve  # noqa: F401 (fixture)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_admission_refuses_beyond_its_capacity_with_retry_after(monkeypatch):
    from aigcguard.service.http import admission

    clock = [100.0]
    monkeypatch.setattr(admission.time, "monotonic", lambda: clock[0])
    a = Admission(queue_length=1)
    with a.slot(), a.slot():
        with pytest.raises(ApiError) as refused, a.slot():
            pass
        assert refused.value.status == 503 and "overloaded" in refused.value.message
        assert refused.value.headers["Retry-After"] == "2"  # two ahead, 1 s each by default
        a.held(4.2)
        clock[0] += 2  # the last refusal is older than the window: two ahead again
        with pytest.raises(ApiError) as refused, a.slot():
            pass
        assert refused.value.headers["Retry-After"] == "9"  # ceil(4.2 x 2)
        # a client refused within the window is waiting for the same places: one more ahead
        clock[0] += 0.5
        with pytest.raises(ApiError) as refused, a.slot():
            pass
        assert refused.value.headers["Retry-After"] == "13"  # ceil(4.2 x 3)
    assert a.stats() == {"in_flight": 0, "capacity": 2, "accepted": 2, "refused": 3}
    with a.slot():  # places come back, also after an error inside
        pass
    with pytest.raises(RuntimeError), a.slot():
        raise RuntimeError("boom")
    assert a.stats()["in_flight"] == 0
    with pytest.raises(ValueError):
        Admission(-1)


class BlockingChecker(FakeChecker):
    """A check that waits until released: the models stay held."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()

    def check(self, pixels, path, on_disk):
        self.started.set()
        self.release.wait(20)
        return super().check(pixels, path, on_disk)


def test_a_full_queue_answers_503_at_once_and_serves_again_after(serve):  # noqa: F811
    config = ServiceConfig(queue_length=1, request_timeout=30.0)
    app = _ready_app(config)
    checker = app.state.aigc.checker = BlockingChecker()
    base = f"http://127.0.0.1:{serve(config, app)}"
    png = _png()
    answers = []

    def post():
        answers.append(httpx.post(f"{base}/v1/check", content=png, timeout=30))

    first = threading.Thread(target=post)
    first.start()
    assert checker.started.wait(10)
    second = threading.Thread(target=post)  # waits for its turn: the one place in the queue
    second.start()
    deadline = time.time() + 10
    while app.state.aigc.admission.stats()["in_flight"] < 2 and time.time() < deadline:
        time.sleep(0.02)
    start = time.monotonic()
    # a third, with a 2 MB body: refused at once (the body drained, nothing decoded)
    r = httpx.post(f"{base}/v1/check", content=png + b"\0" * 2_000_000, timeout=30)
    assert time.monotonic() - start < 1.5
    assert r.status_code == 503 and "overloaded" in r.json()["error"]["message"], r.text
    assert int(r.headers["Retry-After"]) >= 1
    refusing = _app_ms(r)  # the service's own time to refuse, Server-Timing
    assert refusing < 1500
    assert httpx.post(f"{base}/v1/similar", content=png, timeout=30).status_code == 503
    ready = httpx.get(f"{base}/readyz").json()
    assert ready["load"]["in_flight"] == 2 and ready["load"]["refused"] == 2
    checker.release.set()
    first.join(30)
    second.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    # both waited for the release, which came after the refusal had been answered
    assert all(_app_ms(a) > refusing for a in answers)
    assert httpx.post(f"{base}/v1/check", content=png, timeout=30).status_code == 200


def _app_ms(response: httpx.Response) -> float:
    name, _, dur = response.headers["Server-Timing"].partition(";dur=")
    assert name == "app", response.headers["Server-Timing"]
    return float(dur)


def test_the_load_bench_reads_the_services_own_time():
    served = bench_module("service_load")._served
    assert served({"server-timing": "db;dur=3, app;dur=12.5"}) == pytest.approx(0.0125)
    assert served({}) is None
    assert served({"server-timing": "app;dur=x"}) is None


def test_the_load_bench_clients_speak_http_to_the_service(serve):  # noqa: F811
    """The bench's own minimal clients (pre-built multipart request, keep-alive, reconnect):
    every answer parsed, accepted and refused ones timed by the service too."""
    import asyncio

    bench = bench_module("service_load")
    config = ServiceConfig(queue_length=0)
    app = _ready_app(config)
    port = serve(config, app)
    latencies, statuses, served = asyncio.run(bench._load(port, _png(), 4, 1.5))
    assert set(statuses) <= {200, 503} and statuses[200] >= 1, statuses
    assert sum(statuses.values()) == sum(len(v) for v in latencies.values())
    assert len(served.get(200, [])) == statuses[200]


def test_workers_and_queue_length_settings(tmp_path):
    assert ServiceConfig().workers == "auto" and ServiceConfig().queue_length == 4
    assert ServiceConfig(queue_length=0).queue_length == 0
    bad_values = (
        {"workers": 0}, {"workers": True}, {"workers": "many"}, {"workers": 1.5},
        {"queue_length": -1}, {"queue_length": 1.5},
    )  # fmt: skip
    for bad in bad_values:
        with pytest.raises(ValueError, match=next(iter(bad))):
            ServiceConfig(**bad)
    cfg = tmp_path / "service.toml"
    cfg.write_text("[service]\nworkers = 3\nqueue_length = 0\n")
    loaded = ServiceConfig.load(cfg)
    assert (loaded.workers, loaded.queue_length) == (3, 0)
    cfg.write_text('[service]\nworkers = "auto"\n')
    assert ServiceConfig.load(cfg).workers == "auto"


def test_auto_workers_one_a_core_on_the_cpu_capped_and_one_on_a_gpu(monkeypatch):
    from aigcguard.service.http import server

    assert server.worker_count(ServiceConfig(workers=3), "cpu") == 3
    for cores, want in ((1, 1), (2, 2), (6, 6), (64, server.MAX_AUTO_WORKERS)):
        monkeypatch.setattr(server, "usable_cores", lambda n=cores: n)
        assert server.worker_count(ServiceConfig(), "cpu") == want
    # a GPU is shared by one process; asking for one that is not there is still an error
    monkeypatch.setattr(server, "usable_cores", lambda: 16)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    assert server.worker_count(ServiceConfig(), "cuda") == 1
    assert server.worker_count(ServiceConfig(), "auto") == 1
    assert server.worker_count(ServiceConfig(workers=2), "cuda") == 2
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(server, "usable_cores", lambda: 4)
    assert server.worker_count(ServiceConfig(), "auto") == 4
    with pytest.raises(ValueError, match="CUDA is not available"):
        server.worker_count(ServiceConfig(), "cuda")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def _listening(port: int) -> int:
    """How many sockets listen on ``port`` (IPv4, /proc/net/tcp: state 0A is LISTEN)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1 for r in rows
        if int(r.split()[1].rsplit(":", 1)[1], 16) == port and r.split()[3] == "0A"
    )  # fmt: skip


def _connections_reach_both(workers: list[int], port: int) -> None:
    """40 connections opened at once (as 50 clients starting together do) are shared out
    between the two workers, not all taken by whichever woke first."""
    import socket

    before = {pid: _sockets(pid) for pid in workers}
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        deadline = time.time() + 10  # let the workers accept them (a busy machine is slow)
        while True:
            # other sockets come and go (the readiness probe's), so the counts are close, not
            # exact: what matters is that neither worker is left with almost none
            gained = {pid: _sockets(pid) - before[pid] for pid in workers}
            if sum(gained.values()) >= 38 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert sum(gained.values()) >= 38, gained
        assert min(gained.values()) >= 5, f"connections per worker: {gained}"
    finally:
        for s in held:
            s.close()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_prefork_runs_the_workers_restarts_one_that_dies_and_stops_them_all(tmp_path):
    port = free_port()
    script = tmp_path / "serve.py"
    # the real supervisor and uvicorn workers, with the stand-in checker instead of models
    script.write_text(
        textwrap.dedent(
            f"""
            import contextlib, sys
            sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
            import aigcguard.service.http.app as app_module
            from aigcguard.service.http import ServiceConfig
            from aigcguard.service.http.server import prefork
            from tests.test_service_hostile import _ready_app

            def create_app(config, device="auto"):
                app = _ready_app(config)
                @contextlib.asynccontextmanager
                async def no_models(app):
                    yield
                app.router.lifespan_context = no_models
                return app

            app_module.create_app = create_app
            prefork(ServiceConfig(workers=2), host="127.0.0.1", port={port})
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    try:
        if not wait_ready(f"http://127.0.0.1:{port}", 60):
            pytest.fail("the workers did not start")
        workers = _children(proc.pid)
        assert len(workers) == 2
        # each worker listens on a socket of its own, which the kernel shares connections
        # out between; the parent's socket only holds the port (one shared listening socket
        # left the first worker to wake with nearly every connection of a burst)
        assert _listening(port) == 2
        _connections_reach_both(workers, port)
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline:
            now = _children(proc.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the dead worker was not replaced: {_children(proc.pid)}")
        r = httpx.post(f"http://127.0.0.1:{port}/v1/check", content=_png(), timeout=30)
        assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert _children(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
