"""What every request passes before routing: the API key, the declared body size, the body
limit and pace while it streams, and the request's deadline.

A pure ASGI middleware rather than a dependency so that an unauthorised request gets 401
whatever it asks for (an unknown path or a wrong method included), an oversized one 413
before its body is read (or as soon as a chunked body crosses the limit), and a request that
runs past its deadline an answer even while its worker thread is still busy.
"""

from __future__ import annotations

import time

import anyio

from aigcguard.service.http.deps import key_matches
from aigcguard.service.http.errors import ApiError
from aigcguard.service.http.limits import DEADLINE, Body, Message, Reply, header_value

#: paths that never need a key: the probes, and the page (``GET /``), which holds no data
PROBES = frozenset({"/healthz", "/readyz"})
OPEN_PATHS = PROBES | {"/"}
#: path prefixes that never need a key: the page's own files (script, style, strings). A path
#: under one is routed only to those files (or a 404), never to a ``/v1`` route
OPEN_PREFIXES = ("/static/",)


class Guard:
    """The middleware; ``docs`` are the documentation paths, open without a key only when the
    config says ``public_docs``. Every other path but :data:`OPEN_PATHS` and those under
    :data:`OPEN_PREFIXES` needs a key when keys are configured."""

    def __init__(self, app, docs: frozenset[str] = frozenset()):
        self.app, self.docs = app, docs

    async def __call__(self, scope: Message, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = scope["app"].state.aigc.config
        body = Body(receive, scope, config.max_body_bytes, config.body_timeout)
        reply = Reply(send, body)
        refusal = self.refusal(scope, config)
        if refusal is not None:
            await reply.error(*refusal)
            return
        token = DEADLINE.set(time.monotonic() + config.request_timeout)
        try:
            await self._run(scope, body, reply, config.request_timeout)
        finally:
            DEADLINE.reset(token)

    def refusal(self, scope: Message, config) -> tuple[int, str] | None:
        """The status and message for a request refused on its headers alone, or None."""
        path = scope["path"]
        is_open = (
            path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
            or (config.public_docs and path in self.docs)
        )
        if config.api_keys and not is_open:
            keys = [k.encode("utf-8") for k in config.api_keys]
            if not key_matches(scope["headers"], keys):
                return 401, "a valid API key is required (X-API-Key or Bearer)"
        length = header_value(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return 400, "Content-Length is not a number"
            if declared > config.max_body_bytes:
                return 413, f"the body is above the limit of {config.max_body_bytes:,} bytes"
        return None

    async def _run(self, scope: Message, body: Body, reply: Reply, seconds: float) -> None:
        failure = None
        with anyio.CancelScope() as work:
            async with anyio.create_task_group() as watch:
                watch.start_soon(self._deadline, work, body, reply, seconds)
                try:
                    await self.app(scope, body.receive, reply.send)
                except ApiError as exc:  # raised where no handler of the app saw it
                    await reply.error(exc.status, exc.message)
                except Exception as exc:  # a bug: re-raised as itself, not in an ExceptionGroup
                    failure = exc
                finally:
                    watch.cancel_scope.cancel()
        if failure is not None:
            raise failure

    @staticmethod
    async def _deadline(work: anyio.CancelScope, body: Body, reply: Reply, seconds: float):
        """Answer for the app once the deadline passes, then cancel it. Work in a worker
        thread cannot be interrupted: it ends at its next :func:`check_deadline` (waiting for
        the shared models included), and its late answer is dropped."""
        await anyio.sleep(seconds)
        if body.pending:
            await reply.error(408, f"the request body did not arrive within {seconds:g} s")
        else:
            await reply.error(503, f"the request ran past its deadline of {seconds:g} s")
        work.cancel()
