"""Bounds on one request: the size and pace of its body, and its deadline.

:class:`Body` wraps the ASGI receive channel, so the limit holds however the body comes
(``Content-Length``, chunked, multipart): the byte that crosses ``max_body_bytes`` raises a
413 at once, before anything is spooled to disk, and a body that stops arriving for
``body_timeout`` seconds raises a 408. :class:`Reply` wraps the send channel: an answer given
while the body is still coming closes the connection (otherwise the server would go on
reading, and discarding, whatever the client still sends), and once the guard has answered
for the app (the deadline), what the app sends later is dropped.

The deadline of the request being served is a context variable, so that code running in a
worker thread (which sees a copy of the request's context) can give up rather than start
work nobody waits for: :func:`time_left`, :func:`check_deadline`.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

import anyio

from aigcguard.service.http.errors import ApiError, error_response

Message = dict[str, Any]

#: the ``time.monotonic()`` by which the current request must be answered (None: no deadline)
DEADLINE: ContextVar[float | None] = ContextVar("aigc_request_deadline", default=None)


def time_left() -> float | None:
    """Seconds until the current request's deadline (negative past it; None without one)."""
    deadline = DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def check_deadline() -> None:
    """503 when the current request is past its deadline: its answer was given already."""
    left = time_left()
    if left is not None and left <= 0:
        raise ApiError(503, "the request ran past its deadline; try again later")


def header_value(scope: Message, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class Body:
    """The request's receive channel, counted and timed while the body is coming."""

    def __init__(self, receive, scope: Message, limit: int, idle_seconds: float):
        self._receive, self.limit, self.idle = receive, limit, idle_seconds
        length = header_value(scope, b"content-length")
        #: whether body bytes may still come (False once the last piece or a disconnect came)
        self.pending = header_value(scope, b"transfer-encoding") is not None or (
            length is not None and length.strip() not in (b"", b"0")
        )
        self.received = 0
        self.refused: ApiError | None = None

    async def receive(self) -> Message:
        if self.refused is not None:  # the app asks again after a refusal: the same answer
            raise self.refused
        if not self.pending:  # e.g. waiting for a disconnect after the body: not timed
            return await self._receive()
        try:
            with anyio.fail_after(self.idle):
                message = await self._receive()
        except TimeoutError:
            self.refused = ApiError(
                408, f"no part of the body arrived for {self.idle:g} s; send it without pauses"
            )
            raise self.refused from None
        if message["type"] != "http.request":  # http.disconnect
            self.pending = False
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.limit:
            self.refused = ApiError(413, f"the body is above the limit of {self.limit:,} bytes")
            raise self.refused
        if not message.get("more_body", False):
            self.pending = False
        return message


class Reply:
    """The response's send channel: closes the connection when the body was not all read,
    and lets the guard answer in the app's place."""

    def __init__(self, send, body: Body):
        self._send, self.body = send, body
        self.started = False
        self.closed = False  # the guard answered: the app's own answer is dropped
        self._arrived = time.perf_counter()

    async def send(self, message: Message) -> None:
        if self.closed:
            return
        if message["type"] == "http.response.start":
            self.started = True
            headers = [(k, v) for k, v in message.get("headers", ()) if k != b"server-timing"]
            if self.body.pending:
                headers = [(k, v) for k, v in headers if k != b"connection"]
                headers.append((b"connection", b"close"))
            # how long the service took to start answering (W3C Server-Timing): a client
            # on a busy machine can tell its own delays from the service's
            took = 1000 * (time.perf_counter() - self._arrived)
            headers.append((b"server-timing", f"app;dur={took:.1f}".encode()))
            message = {**message, "headers": headers}
        await self._send(message)

    async def error(self, status: int, text: str) -> None:
        """Answer ``{"error": ...}`` unless an answer has started; the app's is then dropped."""
        if self.started or self.closed:
            return
        response = error_response(status, text)
        await self.send(
            {"type": "http.response.start", "status": status, "headers": response.raw_headers}
        )
        await self.send({"type": "http.response.body", "body": response.body})
        self.closed = True
