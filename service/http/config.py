"""The service's settings: a ``[service]`` table in a TOML (or JSON) file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: fields of the config file's ``[service]`` table, with their defaults
DEFAULTS = {
    "api_keys": [],
    "public_docs": False,  # /docs, /redoc and /openapi.json open even when keys are set
    "max_body_bytes": 25 * 1024 * 1024,
    "max_pixels": 40_000_000,
    # the loader's own limits on a side and on the aspect ratio (aigcguard.budget): 20,000 px
    # and 20:1 unless AIGC_MAX_SIDE / AIGC_MAX_ASPECT say otherwise
    "max_side": None,
    "max_aspect": None,
    "max_batch": 16,
    "watermark_key": None,  # the public default key when unset
    "ledger": None,
    "index": None,
    "detector": "default",
    "trust": [],
    "idempotency_entries": 1024,
    # Seconds. A client gets header_timeout to send its request line and headers (then the
    # connection is closed), body_timeout between two pieces of its body (then 408), and
    # request_timeout for the whole request, body and work (then 408 while the body is still
    # coming, 503 after). 50 clients queueing for /v1/check on the 2-core machine waited
    # 34 s at p99 (docs/service.md), inside the 60 s deadline.
    "header_timeout": 10.0,
    "body_timeout": 30.0,
    "request_timeout": 60.0,
    # open connections at once; above, uvicorn answers 503 to new requests
    "max_connections": 1000,
    # Processes serving requests, each with its own models (loaded once) and its own queue;
    # "auto": one a usable core on the CPU (at most 8), one on a GPU (server.worker_count).
    # On the 2-core machine one worker with both cores' threads accepted 9.7 checks a second
    # under 50 clients, two workers of one thread each 18.3 to 18.9 (docs/service.md).
    "workers": "auto",
    # Requests a worker admits to wait while one is checked; the next gets 503 with
    # Retry-After at once, before its body is read. 50 clients on one unbounded worker
    # waited 25 s at p50 (docs/service.md): a client is better told to come back.
    "queue_length": 4,
}

_POSITIVE_INTS = ("max_body_bytes", "max_pixels", "max_batch", "max_connections")
_SECONDS = ("header_timeout", "body_timeout", "request_timeout")


@dataclass(frozen=True)
class ServiceConfig:
    api_keys: tuple[str, ...] = ()
    public_docs: bool = False
    max_body_bytes: int = DEFAULTS["max_body_bytes"]
    max_pixels: int = DEFAULTS["max_pixels"]
    max_side: int | None = None
    max_aspect: float | None = None
    max_batch: int = DEFAULTS["max_batch"]
    watermark_key: str | None = None
    ledger: str | None = None
    index: str | None = None
    detector: str = "default"
    trust: tuple[str, ...] = ()
    idempotency_entries: int = DEFAULTS["idempotency_entries"]
    header_timeout: float = DEFAULTS["header_timeout"]
    body_timeout: float = DEFAULTS["body_timeout"]
    request_timeout: float = DEFAULTS["request_timeout"]
    max_connections: int = DEFAULTS["max_connections"]
    workers: int | str = DEFAULTS["workers"]
    queue_length: int = DEFAULTS["queue_length"]

    def __post_init__(self):
        problem = _problem(self)
        if problem:
            raise ValueError(problem)

    @classmethod
    def load(cls, path: str | Path) -> ServiceConfig:
        """A TOML (or JSON) file with a ``[service]`` table; relative paths are taken from the
        file's folder. Unknown fields and unusable values are refused with a ValueError naming
        the file (a typo must not silently drop a limit, an empty key must not turn
        authentication off)."""
        from aigcguard.fileio import read_config

        path = Path(path)
        raw = read_config(path, "service config")
        table = raw.get("service", raw)
        unknown = sorted(set(table) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"{path}: unknown service settings {unknown}")

        def rel(p):
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else path.parent / q)

        values = dict(table)
        for name in ("ledger", "index"):
            if values.get(name):
                values[name] = rel(values[name])
        values["trust"] = tuple(rel(t) for t in values.get("trust", []))
        keys = values.get("api_keys", [])
        if isinstance(keys, (list, tuple)):
            values["api_keys"] = tuple(str(k) for k in keys)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None


def _key_problem(i: int, key) -> str | None:
    if not isinstance(key, str):
        return f"api_keys[{i}] is not a string"
    if not key.strip():
        return f"api_keys[{i}] is empty or whitespace (it would let any request in)"
    if key != key.strip():
        return f"api_keys[{i}] starts or ends with whitespace (a header value cannot carry it)"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return f"api_keys[{i}] holds a control character (a header value cannot carry it)"
    return None


def _problem(c: ServiceConfig) -> str | None:
    """What is wrong with the settings, or None."""
    if isinstance(c.api_keys, (str, bytes)) or not isinstance(c.api_keys, (list, tuple)):
        return "api_keys must be a list of strings"
    for i, key in enumerate(c.api_keys):
        problem = _key_problem(i, key)
        if problem:
            return problem
    if not isinstance(c.public_docs, bool):
        return f"public_docs must be true or false, not {c.public_docs!r}"
    for name in _POSITIVE_INTS:
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} must be a whole number above 0, not {value!r}"
    w = c.workers
    if w != "auto" and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
        return f'workers must be "auto" or a whole number above 0, not {w!r}'
    q = c.queue_length
    if isinstance(q, bool) or not isinstance(q, int) or q < 0:
        return f"queue_length must be a whole number, 0 or more, not {q!r}"
    if isinstance(c.idempotency_entries, bool) or not isinstance(c.idempotency_entries, int):
        return f"idempotency_entries must be a whole number, not {c.idempotency_entries!r}"
    for name in _SECONDS:
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            return f"{name} must be a number of seconds above 0, not {value!r}"
    side, aspect = c.max_side, c.max_aspect
    if side is not None and (isinstance(side, bool) or not isinstance(side, int) or side < 1):
        return f"max_side must be a whole number of pixels above 0, not {side!r}"
    bad_aspect = isinstance(aspect, bool) or not isinstance(aspect, (int, float)) or aspect < 1
    if aspect is not None and bad_aspect:
        return f"max_aspect must be a ratio of at least 1, not {aspect!r}"
    return None
