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
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from aigcguard.service.http.config import ServiceConfig


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


def run(config: ServiceConfig, *, host: str, port: int, device: str = "auto") -> None:
    """Serve ``create_app(config)`` until interrupted."""
    import uvicorn

    from aigcguard.service.http.app import create_app

    app = create_app(config, device=device)
    uvicorn.Server(server_config(app, config, host=host, port=port)).run()
