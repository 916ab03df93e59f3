"""The HTTP service under load, and under malformed requests.

    python bench/service_load.py [--clients 50] [--seconds 60] [--malformed 1000]
        [--workers auto] [--queue-length 4] [--out FILE.md]

Starts `aigc serve` in its own process on a free loopback port (a config with the given
``workers`` and ``queue_length``, public watermark key, the default detector), waits for
/readyz, then:

1. Load: ``--clients`` concurrent clients (asyncio streams, one keep-alive connection each,
   the request bytes built once) post a 512 x 512 JPEG (Kodak or scikit-image photo,
   quality 90) to /v1/check, back to back, for ``--seconds``; a client refused with 503
   waits the ``Retry-After`` it was given, as a polite client would. Every response's
   status and latency is recorded, accepted (200) and refused (503) apart. Requests still
   in flight at the end are awaited and counted.
2. Malformed: ``--malformed`` requests of kinds drawn in turn: truncated JPEG and PNG bodies,
   random bytes, an empty body, a form instead of a picture, a multipart text field, a PNG
   header claiming 100,000 x 100,000 pixels, a body above the size limit, wrong methods and
   paths, bad query values; statuses are tallied, any 5xx is a failure. /readyz must still
   answer 200 afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from aigcguard.service.http import ServiceConfig
from aigcguard.service.http.server import worker_count

#: run the `aigc` command in a child process, whatever its script's path
SERVE = "from aigcguard.cli import main; main()"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jpeg(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression-bomb probe)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + iend
    )


def _served(headers: dict[str, str]) -> float | None:
    """The service's own time to answer (its ``Server-Timing: app;dur=MS``), in seconds."""
    for part in headers.get("server-timing", "").split(","):
        name, _, params = part.strip().partition(";")
        if name == "app" and params.startswith("dur="):
            try:
                return float(params[4:]) / 1000
            except ValueError:
                return None
    return None


def _check_request(host: str, body: bytes) -> bytes:
    """The whole HTTP/1.1 request a client sends, built once: a multipart upload of ``body``
    to /v1/check, as a browser or ``curl -F`` would send it."""
    boundary = "aigc-load-0123456789"
    payload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/check HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _exchange(reader, writer, request: bytes) -> tuple[int, dict[str, str]]:
    """Send ``request`` and read the answer (status, headers; the body is read and dropped)."""
    writer.write(request)
    await writer.drain()
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("closed before an answer")
    status = int(line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers


async def _load(
    port: int, body: bytes, clients: int, seconds: float
) -> tuple[dict[object, list[float]], Counter, dict[object, list[float]]]:
    """Latencies by status (or exception name) as the clients saw them, the statuses'
    counts, and the service's own times by status (from Server-Timing). Each client is a
    keep-alive connection writing a request built once (asyncio streams, no HTTP library:
    the load generator shares the machine's two cores with the service, so it must cost as
    little as it can), reconnecting when the service closes it."""
    latencies: dict[object, list[float]] = {}
    served: dict[object, list[float]] = {}
    statuses: Counter = Counter()
    stop = time.perf_counter() + seconds
    request = _check_request(f"127.0.0.1:{port}", body)

    async def client():
        conn = None
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            wait = 0.0
            try:
                if conn is not None and conn[0].at_eof():
                    conn[1].close()  # the service closed it while this client waited
                    conn = None
                reused = conn is not None
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", port)
                try:
                    status, headers = await _exchange(*conn, request)
                except ConnectionError:
                    if not reused:
                        raise
                    # a kept-alive connection closed as it was reused: once more on a new
                    # one, as HTTP clients do for a request that got no answer at all
                    conn[1].close()
                    conn = await asyncio.open_connection("127.0.0.1", port)
                    status, headers = await _exchange(*conn, request)
                took = _served(headers)
                if took is not None:
                    served.setdefault(status, []).append(took)
                if status == 503:
                    wait = float(headers.get("retry-after", "1"))
                if headers.get("connection", "").lower() == "close":
                    conn[1].close()
                    conn = None
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                status = type(exc).__name__
                if conn is not None:
                    conn[1].close()
                conn = None
            statuses[status] += 1
            latencies.setdefault(status, []).append(time.perf_counter() - t0)
            if wait:
                await asyncio.sleep(wait)
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, statuses, served


def _quantiles(values: list[float]) -> str:
    """p50, p95 and p99 as table cells."""
    if len(values) < 2:
        cell = f"{values[0]:.2f}" if values else "-"
        return f"{cell} | {cell} | {cell}"
    q = statistics.quantiles(values, n=100)
    return f"{q[49]:.2f} | {q[94]:.2f} | {q[98]:.2f}"


def _malformed_requests(good_jpeg: bytes, good_png: bytes, limit: int):
    rng = np.random.default_rng(0)
    kinds = [
        (
            "truncated JPEG",
            lambda: ("POST", "/v1/check", {"content": good_jpeg[: len(good_jpeg) // 3]}),
        ),
        (
            "truncated PNG",
            lambda: ("POST", "/v1/check", {"content": good_png[: len(good_png) // 2]}),
        ),
        (
            "random bytes",
            lambda: ("POST", "/v1/check", {"content": rng.bytes(int(rng.integers(1, 5000)))}),
        ),
        ("empty body", lambda: ("POST", "/v1/check", {"content": b""})),
        ("form, not a picture", lambda: ("POST", "/v1/check", {"data": {"file": "hello"}})),
        (
            "multipart text field",
            lambda: ("POST", "/v1/check", {"data": {"file": "x"}, "files": {"o": ("o", b"1")}}),
        ),
        (
            "huge dimensions",
            lambda: ("POST", "/v1/check", {"content": _png_header(100_000, 100_000)}),
        ),
        ("above the size limit", lambda: ("POST", "/v1/check", {"content": b"\xff" * (limit + 1)})),
        ("wrong method", lambda: ("GET", "/v1/check", {})),
        ("unknown path", lambda: ("POST", "/v1/nothing", {"content": good_jpeg})),
        (
            "bad message_hex",
            lambda: (
                "POST",
                "/v1/watermark/embed",
                {"content": good_jpeg, "params": {"message_hex": "xyz"}},
            ),
        ),
        (
            "batch of garbage",
            lambda: ("POST", "/v1/check/batch", {"files": [("files", ("a", rng.bytes(100)))]}),
        ),
        ("similar without index", lambda: ("POST", "/v1/similar", {"content": good_jpeg})),
        (
            "wrong content type",
            lambda: (
                "POST",
                "/v1/watermark/detect",
                {"content": b'{"a": 1}', "headers": {"content-type": "application/json"}},
            ),
        ),
    ]
    return kinds


SEQUENTIAL_SECONDS = 15
IN_PROCESS_RUNS = 100  # 20 moved by a third from run to run (14.8 to 26.0 per s)


def _fresh_process_rate(body: bytes) -> float:
    """:func:`_in_process_rate` in a process of its own, started for it, as ``aigc check``
    runs: the anchor the service's throughput is compared with. (Measured in this process,
    the rate after the load came out 6% to 35% above the rate before it in every run, the
    same check on a quiet machine; a fresh process for each measures both alike.)"""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "picture.jpg"
        path.write_bytes(body)
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"import service_load; from pathlib import Path; "
            f"print(service_load._in_process_rate(Path({str(path)!r})))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def _in_process_rate(path: Path) -> float:
    """Checks per second of ``aigc check``'s library call on the picture at ``path``, in this
    process: one warm-up, then the mean of :data:`IN_PROCESS_RUNS`."""
    from aigcguard.imageio import load_image
    from aigcguard.service.check import Checker

    checker = Checker()
    checker.check(load_image(path).pixels, str(path), on_disk=True)
    t0 = time.perf_counter()
    for _ in range(IN_PROCESS_RUNS):
        checker.check(load_image(path).pixels, str(path), on_disk=True)
    return IN_PROCESS_RUNS / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--malformed", type=int, default=1000)
    ap.add_argument(
        "--workers", default="auto", help='"auto" (the default: one a core on the CPU) or a number'
    )
    ap.add_argument("--queue-length", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    photos = common.load_kodak() if common.kodak_available() else common.load_skimage()
    picture = common.square(photos[0][1], 512)
    body = _jpeg(picture)
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    good_png = buf.getvalue()
    # the in-process rate moved by a third between two runs an hour apart: it is measured
    # before the service starts and after it stops, and the ratio given against both
    before = _fresh_process_rate(body)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config = Path(tempfile.mkdtemp()) / "service.toml"
    workers = args.workers if args.workers == "auto" else int(args.workers)
    n = worker_count(ServiceConfig(workers=workers), "cpu")
    shown = f'"auto" ({n})' if workers == "auto" else str(n)
    setting = json.dumps(workers)  # a TOML string or number
    config.write_text(f"[service]\nworkers = {setting}\nqueue_length = {args.queue_length}\n")
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            "serve",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--config",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        if not common.wait_ready(base, 180, server):
            print("error: the service did not become ready", file=sys.stderr)
            return 1
        httpx.post(f"{base}/v1/check", content=body, timeout=120)  # warm-up
        # one client back to back: the service's own cost per request over the in-process
        # check (upload, temporary file, decode, JSON), without 49 others sharing the cores
        t0 = time.perf_counter()
        _, alone_statuses, _ = asyncio.run(_load(port, body, 1, SEQUENTIAL_SECONDS))
        sequential = alone_statuses[200] / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        latencies, statuses, served = asyncio.run(_load(port, body, args.clients, args.seconds))
        wall = time.perf_counter() - t0
        # a refusal (503 with Retry-After) is the service working as designed, not an error
        errors = sum(n for s, n in statuses.items() if s not in (200, 503))
        accepted, refused = latencies.get(200, []), latencies.get(503, [])
        load_rows = [
            "| workers | queue per worker | clients | seconds | accepted | refused (503) | "
            "errors | accepted per s | accepted p50 / p95 / p99 (s) "
            "| refused p50 / p95 / p99 (s) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {shown} | {args.queue_length} | {args.clients} | {wall:.0f} | "
            f"{len(accepted)} | {len(refused)} | {errors} | {len(accepted) / wall:.2f} | "
            f"{_quantiles(accepted).replace(' | ', ' / ')} | "
            f"{_quantiles(refused).replace(' | ', ' / ')} |",
        ]
        at_service = [
            "| answer | count | p50 / p95 / p99 at the client (s) | at the service (s) |",
            "| --- | ---: | --- | --- |",
        ]
        for label, status in (("accepted (200)", 200), ("refused (503)", 503)):
            mine, theirs = latencies.get(status, []), served.get(status, [])
            at_service.append(
                f"| {label} | {len(mine)} | {_quantiles(mine).replace(' | ', ' / ')} | "
                f"{_quantiles(theirs).replace(' | ', ' / ')} |"
            )
        print("\n".join(load_rows + at_service), file=sys.stderr)

        kinds = _malformed_requests(body, good_png, 25 * 1024 * 1024)
        tally: dict[str, Counter] = {name: Counter() for name, _ in kinds}
        with httpx.Client(base_url=base, timeout=120) as http:
            for i in range(args.malformed):
                name, make = kinds[i % len(kinds)]
                method, path, kw = make()
                try:
                    r = http.request(method, path, **kw)
                    tally[name][r.status_code] += 1
                except httpx.HTTPError as exc:
                    tally[name][type(exc).__name__] += 1
            ready = http.get("/readyz").status_code
        fivexx = sum(
            n for c in tally.values() for s, n in c.items() if isinstance(s, int) and s >= 500
        )
        bad_rows = ["| request | count | statuses |", "| --- | ---: | --- |"]
        for name, counts in tally.items():
            got = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items(), key=str))
            bad_rows.append(f"| {name} | {sum(counts.values())} | {got} |")
    finally:
        server.terminate()
        server.wait(timeout=30)
    alone = _fresh_process_rate(body)  # after the service stopped: nothing else running
    info = common.machine_info()
    markdown = "\n".join(
        [
            f"### Load: /v1/check, 512 x 512 JPEG, {args.clients} concurrent clients",
            "",
            *load_rows,
            "",
            "The same answers timed by the clients (asyncio streams in one process, sharing the "
            "machine) and by the service itself (its `Server-Timing` header: from the request's "
            "arrival to the start of its answer):",
            "",
            *at_service,
            "",
            f"Statuses: {dict(statuses)}. The same check in one process (`Checker.check` on "
            f"the same JPEG read from a file, mean of {IN_PROCESS_RUNS} after a warm-up, in a "
            "process started for it), "
            f"before the service started and after it stopped: {before:.2f} and {alone:.2f} "
            f"per s; the service's accepted rate is {len(accepted) / wall / before:.0%} and "
            f"{len(accepted) / wall / alone:.0%} of them. One client alone, back to back for "
            f"{SEQUENTIAL_SECONDS} s before the load: {sequential:.2f} checks per s through "
            f"the service ({sequential / before:.0%} and {sequential / alone:.0%} of the "
            "in-process rates).",
            "",
            f"### Malformed requests ({args.malformed})",
            "",
            *bad_rows,
            "",
            f"5xx responses: {fivexx}; /readyz afterwards: {ready}. "
            f"{info['cpu_model']}, {os.cpu_count()} cores, CPU only.",
        ]
    )
    common.print_markdown(markdown, args.out)
    return 0 if errors == 0 and fivexx == 0 and ready == 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())
