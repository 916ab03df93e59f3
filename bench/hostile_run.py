"""The hostile corpus through every entry point: tracebacks, missing lines, peak memory.

    python bench/hostile_run.py [--corpus DIR] [--light] [--no-service] [--out FILE.md]

Builds the corpus of ``bench/hostile_corpus.py`` (or uses ``--corpus``), then:

1. Commands. Each of ``aigc check``, ``similar`` (an index of the corpus's ordinary pictures),
   ``watermark detect``, ``detect``, ``provenance verify`` and ``provenance read`` runs once
   on the whole corpus folder, in its own process under ``/usr/bin/time``. Per command: the
   exit code, tracebacks on stderr, corpus entries without a JSON line, ordinary pictures not
   processed, the peak resident memory and the wall time. Targets (issue 18): 0 tracebacks,
   every entry a line, the ordinary pictures processed, peak memory under 3 GB.
2. Service (unless ``--no-service``). ``aigc serve`` on a free loopback port; every corpus
   file is posted to /v1/check and /v1/watermark/detect by 8 clients at once, mixed with
   ordinary pictures; statuses are tallied (target: no 5xx) and /readyz must answer 200
   afterwards. Then a chunked upload with no Content-Length, sent until it passes the body
   limit (target: 413 within a second of crossing it), and a connection that never finishes
   its headers (target: closed by the server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import hostile_corpus

AIGC = [sys.executable, "-c", "from aigcguard.cli import main; main()"]
MEMORY_TARGET_MB = 3 * 1024


def _commands(corpus: Path, index: Path) -> dict[str, list[str]]:
    c = str(corpus)
    return {
        "aigc check": ["check", c],
        "aigc similar": ["similar", c, "--index", str(index)],
        "aigc watermark detect": ["watermark", "detect", c],
        "aigc detect": ["detect", c],
        "aigc provenance verify": ["provenance", "verify", c],
        "aigc provenance read": ["provenance", "read", c],
    }


def _entry_of(path: str, corpus: Path) -> str | None:
    """The corpus entry a line's path belongs to (its first component below the corpus)."""
    p = Path(path)
    for base in (corpus, corpus.resolve()):
        try:
            return p.relative_to(base).parts[0]
        except (ValueError, IndexError):
            continue
    return None


def run_command(name: str, argv: list[str], corpus: Path, entries, timeout: float) -> dict:
    """One command on the corpus, measured; what it printed, judged against the entries."""
    with tempfile.NamedTemporaryFile(suffix=".time") as stats:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                ["/usr/bin/time", "-f", "%M", "-o", stats.name, *AIGC, *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = "timeout", exc.stdout or "", exc.stderr or ""
            out = out.decode() if isinstance(out, bytes) else out
            err = err.decode() if isinstance(err, bytes) else err
        seconds = time.perf_counter() - t0
        text = Path(stats.name).read_text().split()
        peak_mb = int(text[-1]) / 1024 if text and text[-1].isdigit() else float("nan")
    seen: dict[str, list[dict]] = {}
    unparsed = 0
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            unparsed += 1
            continue
        entry = _entry_of(str(record.get("path", "")), corpus)
        if entry is not None:
            seen.setdefault(entry, []).append(record)
    missing = sorted(e.name for e in entries if e.name not in seen)
    ordinary = [e.name for e in entries if e.name.startswith("good_")]
    not_processed = sorted(
        n for n in ordinary if not seen.get(n) or any(r.get("error") for r in seen[n])
    )
    return {
        "command": name,
        "exit": code,
        "tracebacks": err.count("Traceback (most recent call last)"),
        "entries": len(entries),
        "missing": missing,
        "ordinary_not_processed": not_processed,
        "refused_or_failed": sum(any(r.get("error") for r in v) for v in seen.values()),
        "peak_mb": round(peak_mb, 1),
        "seconds": round(seconds, 1),
        "unparsed_lines": unparsed,
        "stderr_tail": err[-2000:],
    }


# -------------------------------------------------------------------------------- service


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_service(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [*AIGC, "serve", "--port", str(port), "--device", "cpu"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if common.wait_ready(f"http://127.0.0.1:{port}", 240, server):
        return server
    server.terminate()
    raise SystemExit("error: the service did not become ready")


def _post_all(base: str, files: list[Path], good: list[bytes]) -> tuple[Counter, list]:
    """Every corpus file to /v1/check and /v1/watermark/detect, ordinary pictures between."""
    jobs = []
    for i, path in enumerate(files):
        body = path.read_bytes()
        for route in ("/v1/check", "/v1/watermark/detect"):
            jobs.append((route, path.name, body))
        jobs.append(("/v1/check", "ordinary", good[i % len(good)]))

    def send(job):
        route, name, body = job
        try:
            with httpx.Client(base_url=base, timeout=300) as http:
                return route, name, http.post(route, content=body).status_code
        except httpx.HTTPError as exc:
            return route, name, type(exc).__name__

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, jobs))
    return Counter((route, status) for route, _, status in results), results


def _chunked_over_limit(port: int, limit: int, chunk: int = 1 << 20) -> dict:
    """Send a chunked body until well past ``limit``; seconds from crossing it to the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    sent, crossed, answer = 0, None, b""
    block = b"%x\r\n" % chunk + b"\xff" * chunk + b"\r\n"
    try:
        while sent < 8 * limit:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = sock.recv(4096)
                break
            sock.sendall(block)
            sent += chunk
            if crossed is None and sent > limit:
                crossed = time.perf_counter()
        if not answer:
            sock.settimeout(30)
            answer = sock.recv(4096)
    except OSError:  # the server closed the connection while we were sending
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            answer = answer or sock.recv(4096)
    after = None if crossed is None else time.perf_counter() - crossed
    sock.close()
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
    return {"sent_mb": round(sent / 2**20, 1), "status": status, "seconds_after_limit": after}


def _half_open(port: int, wait: float = 120.0) -> dict:
    """A request whose headers never end: how long until the server closes the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    sock.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\n")
    t0 = time.perf_counter()
    try:
        data = sock.recv(4096)
        closed = time.perf_counter() - t0
        outcome = "closed" if not data else data.split(b"\r\n", 1)[0].decode()
    except TimeoutError:
        closed, outcome = None, f"still open after {wait:.0f} s"
    sock.close()
    return {"outcome": outcome, "seconds": None if closed is None else round(closed, 1)}


def run_service(corpus: Path, entries, limit: int) -> dict:
    files = [corpus / e.name for e in entries if (corpus / e.name).is_file()]
    good = [(corpus / e.name).read_bytes() for e in entries if e.name.startswith("good_")]
    port = _free_port()
    server = _start_service(port)
    base = f"http://127.0.0.1:{port}"
    try:
        tally, results = _post_all(base, files, good)
        ready = httpx.get(f"{base}/readyz", timeout=30).status_code
        chunked = _chunked_over_limit(port, limit)
        half_open = _half_open(port)
        ready_end = httpx.get(f"{base}/readyz", timeout=30).status_code
    finally:
        server.terminate()
        server.wait(timeout=30)
    fivexx = sorted(
        f"{route} {name}: {status}"
        for route, name, status in results
        if not isinstance(status, int) or status >= 500
    )
    return {
        "requests": sum(tally.values()),
        "statuses": {f"{route} {status}": n for (route, status), n in sorted(tally.items())},
        "5xx_or_failed": fivexx,
        "ready_after_corpus": ready,
        "chunked_over_limit": chunked,
        "half_open": half_open,
        "ready_at_end": ready_end,
    }


# ---------------------------------------------------------------------------------- report


def _markdown(rows: list[dict], service: dict | None, corpus_size: int) -> str:
    lines = [
        f"#### Commands on the hostile corpus ({corpus_size} entries)",
        "",
        "| command | exit | tracebacks | entries without a line | ordinary pictures not "
        "processed | refused or failed | peak memory (MB) | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['command']} | {r['exit']} | {r['tracebacks']} | {len(r['missing'])} | "
            f"{len(r['ordinary_not_processed'])} | {r['refused_or_failed']} | "
            f"{r['peak_mb']:.0f} | {r['seconds']:.0f} |"
        )
    if service is not None:
        c, h = service["chunked_over_limit"], service["half_open"]
        after = c["seconds_after_limit"]
        lines += [
            "",
            f"#### Service: {service['requests']} requests (corpus files to /v1/check and "
            "/v1/watermark/detect, ordinary pictures between, 8 clients)",
            "",
            "| route and status | requests |",
            "| --- | ---: |",
            *[f"| {k} | {n} |" for k, n in service["statuses"].items()],
            "",
            f"5xx or failed requests: {len(service['5xx_or_failed'])}; /readyz after the corpus: "
            f"{service['ready_after_corpus']}, at the end: {service['ready_at_end']}. "
            f"Chunked upload with no Content-Length: {c['status']} after {c['sent_mb']} MiB sent"
            + ("" if after is None else f", {after:.2f} s after crossing the limit")
            + f". Headers never finished: {h['outcome']}"
            + ("" if h["seconds"] is None else f" after {h['seconds']} s")
            + ".",
        ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, help="an existing corpus folder (else one is built)")
    ap.add_argument("--light", action="store_true", help="leave out the slow entries")
    ap.add_argument("--no-service", action="store_true")
    ap.add_argument("--only", help="comma-separated commands to run (e.g. 'aigc check')")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus or Path(tmp) / "corpus"
        entries = hostile_corpus.build(corpus, light=args.light)
        index = Path(tmp) / "index"
        good = [str(corpus / e.name) for e in entries if e.name.startswith("good_")]
        subprocess.run(
            [*AIGC, "index", "build", *good, "--index", str(index)], check=True, capture_output=True
        )
        wanted = set(args.only.split(",")) if args.only else None
        rows = []
        for name, argv in _commands(corpus, index).items():
            if wanted and name not in wanted:
                continue
            row = run_command(name, argv, corpus, entries, args.timeout)
            print(json.dumps({k: v for k, v in row.items() if k != "stderr_tail"}), file=sys.stderr)
            rows.append(row)
        service = None if args.no_service else run_service(corpus, entries, 25 * 2**20)
    info = common.machine_info()
    markdown = _markdown(rows, service, len(entries)) + (
        f"\n\n{info['cpu_model']}, {os.cpu_count()} cores, CPU only."
    )
    common.write_outputs(
        "hostile",
        markdown,
        {"commands": rows, "service": service},
        str(args.out) if args.out else None,
        quick=args.light,
    )
    ok = all(
        r["tracebacks"] == 0
        and not r["missing"]
        and not r["ordinary_not_processed"]
        and r["peak_mb"] < MEMORY_TARGET_MB
        and r["exit"] in (0, 1)
        for r in rows
    )
    if service is not None:
        ok = ok and not service["5xx_or_failed"] and service["ready_at_end"] == 200
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
