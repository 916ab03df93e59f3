"""Running the app on uvicorn with the service's connection limits (what ``aigc serve`` does).

uvicorn (0.55, read in its ``protocols/http/h11_impl.py`` and ``httptools_impl.py``) closes a
kept-alive connection that stays idle for ``timeout_keep_alive`` seconds, but runs no timer
while it waits for a request's line and headers: a client that connects and sends nothing,
or half a request line, holds its connection (and a place under ``limit_concurrency``) for
ever. :func:`protocol` adds that timer to uvicorn's own HTTP/1.1 protocol: ``header_timeout``
seconds from the connection's start, or from the end of the previous answer, to the end of
the headers; then the connection is closed (with a 408 when part of a request came). The body
and the request's deadline are bounded in the app (``limits``, ``middleware``), so that they
hold under any server.

What uvicorn bounds itself: a header section above 16 KiB is a 400 (h11's
``max_incomplete_event_size``); above ``max_connections`` open connections, new requests get
503 (``limit_concurrency``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from aigcguard.service.http.config import ServiceConfig

log = logging.getLogger("aigcguard.service")


def _timeout_answer(seconds: float) -> bytes:
    message = f"the request line and headers did not arrive within {seconds:g} s"
    body = json.dumps({"error": {"status": 408, "message": message}}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class HeaderTimeout:
    """Mixed in before a uvicorn HTTP/1.1 protocol class (h11 or httptools): both start a
    new ``cycle`` when a request's headers are complete and call ``on_response_complete``
    after each answer, which is all this needs."""

    header_timeout: float = 10.0
    _timer: asyncio.TimerHandle | None = None
    _waiting_since_cycle = None  # the cycle current when the wait began
    _partial = False  # bytes of the awaited request arrived

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            self._partial = True
        super().data_received(data)
        if self._timer is not None and self.cycle is not self._waiting_since_cycle:
            self._disarm()  # the headers of a request are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # a pipelined request may have started inside: then its headers are in already
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._waiting_since_cycle, self._partial = self.cycle, False
        self._timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            if self._partial:
                self.transport.write(_timeout_answer(self.header_timeout))
            self.transport.close()


def protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (httptools when installed, else h11) with the header
    timeout."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    name = f"HeaderTimeout{AutoHTTPProtocol.__name__}"
    return type(name, (HeaderTimeout, AutoHTTPProtocol), {"header_timeout": header_timeout})


def server_config(
    app: FastAPI, config: ServiceConfig, *, host: str, port: int, log_level: str = "info"
) -> uvicorn.Config:
    """The uvicorn settings for ``app`` under ``config``'s connection limits."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol(config.header_timeout),
        limit_concurrency=config.max_connections,
    )


#: ``workers = "auto"`` starts at most this many: each worker holds its own models
MAX_AUTO_WORKERS = 8


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def worker_count(config: ServiceConfig, device: str = "auto") -> int:
    """How many processes serve: ``config.workers``, or for ``"auto"`` one a usable core (at
    most :data:`MAX_AUTO_WORKERS`) when the checks run on the CPU, and one when they run on a
    GPU or where processes cannot be forked. On the CPU a check with one thread a process
    scales across processes with little loss, where one process's threads wait on each other
    and on the requests' own work: on the 2-core machine under 50 clients one worker accepted
    9.7 checks a second, two workers 18.3 to 18.9 (docs/service.md). A GPU is shared better
    by one process than by several CUDA contexts."""
    if config.workers != "auto":
        return int(config.workers)
    if not hasattr(os, "fork"):
        return 1
    from aigcguard.device import pick_device

    if pick_device(device).type != "cpu":
        return 1
    return min(MAX_AUTO_WORKERS, usable_cores())


def run(config: ServiceConfig, *, host: str, port: int, device: str = "auto") -> None:
    """Serve ``create_app(config)`` until interrupted: in this process, or with more than
    one worker (:func:`worker_count`) in that many forked processes (:func:`prefork`)."""
    import uvicorn

    from aigcguard.service.http.app import create_app

    if worker_count(config, device) > 1:
        prefork(config, host=host, port=port, device=device)
        return
    app = create_app(config, device=device)
    uvicorn.Server(server_config(app, config, host=host, port=port)).run()


def prefork(config: ServiceConfig, *, host: str, port: int, device: str = "auto") -> None:
    """Bind once and fork :func:`worker_count` processes that accept on that port (each on a
    socket of its own where the kernel shares connections out, :func:`_kernel_balances`; else
    all on the parent's), each loading the models once and keeping its own bounded queue
    (``admission``), with the cores shared out between their torch thread pools. The parent
    only supervises: a worker that dies is started again, and SIGINT or SIGTERM stops them
    all. POSIX only (``os.fork``); uvicorn's own ``--workers`` needs an importable app and
    pickles its settings, which our protocol class is not."""
    import signal
    import socket
    import time

    if not hasattr(os, "fork"):
        raise ValueError("workers above 1 need os.fork (Linux or macOS); set workers = 1")
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    balanced = _kernel_balances()
    sock = _bound(family, kind, proto, address, balanced)
    address = sock.getsockname()  # port 0: the port the system chose, for every worker
    if not balanced:
        sock.listen(2048)  # one queue that every worker accepts from
    # else the parent's socket only holds the port: bound, never listening, it gets no
    # connections, and each worker listens on a socket of its own in the same group
    workers = worker_count(config, device)
    threads = max(1, usable_cores() // workers)
    children: dict[int, int] = {}
    stopping = False

    def spawn(i: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: default signals (uvicorn installs its own), then serve
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 0
            try:
                listener = sock
                if balanced:
                    listener = _bound(family, kind, proto, address, balanced)
                    listener.listen(2048)
                    sock.close()  # this process's copy of the parent's
                _serve_worker(
                    config, listener, host=host, port=port, device=device, threads=threads
                )
            except BaseException:
                log.exception("worker %d stopped on an error", i)
                code = 1
            os._exit(code)
        children[pid] = i

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for i in range(workers):
        spawn(i)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            i = children.pop(pid, None)
            if i is not None and not stopping:
                log.warning("worker %d (pid %d) exited with %d; starting it again", i, pid, status)
                time.sleep(1.0)  # a worker that cannot start must not spin the supervisor
                spawn(i)
    finally:
        sock.close()


def _kernel_balances() -> bool:
    """Whether each worker can listen on its own socket of one port and the kernel share new
    connections out between them (Linux's SO_REUSEPORT, by a hash of each connection's
    addresses). From one shared socket, the first worker to wake takes every connection
    waiting (asyncio accepts up to its backlog at a time), and kept-alive connections stay
    where they landed: one run of 50 clients put nearly all of them on one of two workers,
    which then accepted 12.4 checks a second while the other idled (docs/service.md)."""
    import socket
    import sys

    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _bound(family, kind, proto, address, reuse_port: bool):
    import socket

    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _serve_worker(config, sock, *, host: str, port: int, device: str, threads: int) -> None:
    import torch
    import uvicorn

    from aigcguard.service.http.app import create_app

    torch.set_num_threads(threads)
    app = create_app(config, device=device)
    uvicorn.Server(server_config(app, config, host=host, port=port)).run(sockets=[sock])
